/* placeholder: replaced by the interposer */
#include "config.h"
