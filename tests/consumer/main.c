/* Links against an installed ssock and checks the version it runs with. */
#include <ssock.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	printf("ssock %s: %s\n", ssock_version(), ssock_strerror(SSOCK_ESENDQFULL));
	return strcmp(ssock_version(), SSOCK_VERSION_STRING) == 0 ? 0 : 1;
}
