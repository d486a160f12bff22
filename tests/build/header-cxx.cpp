// gwmem.h alone, as C++ (-pedantic -Werror).
#include <gwmem.h>

int main()
{
	gwmem_config cfg;
	gwmem_config_defaults(&cfg);
	return 0;
}
