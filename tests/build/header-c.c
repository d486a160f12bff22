/* gwmem.h alone, as strict C99 (-std=c99 -pedantic -Werror). */
#include <gwmem.h>

int main(void)
{
	struct gwmem_config cfg;
	gwmem_config_defaults(&cfg);
	return 0;
}
