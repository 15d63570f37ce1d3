/* An account lookup that hangs as behind a silent LDAP server, for a real daemon.
 *
 * Loaded with LD_PRELOAD (tests/support/hang_nss.py compiles it), it stands in
 * front of glibc's getpwnam_r, which CPython's pwd.getpwnam calls, and getpwnam,
 * which builds without getpwnam_r call: a name beginning with "hung" never gets
 * an answer, its calling thread alone waiting in pause(2) until the process
 * ends; any other name is looked up by the real function.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pwd.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

static void hang_if_hung(const char *name)
{
    if (name != NULL && strncmp(name, "hung", 4) == 0)
        for (;;)
            pause();
}

int getpwnam_r(const char *name, struct passwd *pwd, char *buf, size_t size,
               struct passwd **result)
{
    int (*real)(const char *, struct passwd *, char *, size_t, struct passwd **);

    hang_if_hung(name);
    *(void **)&real = dlsym(RTLD_NEXT, "getpwnam_r");
    if (real == NULL) {
        *result = NULL;
        return ENOSYS;
    }
    return real(name, pwd, buf, size, result);
}

struct passwd *getpwnam(const char *name)
{
    struct passwd *(*real)(const char *);

    hang_if_hung(name);
    *(void **)&real = dlsym(RTLD_NEXT, "getpwnam");
    if (real == NULL) {
        errno = ENOSYS;
        return NULL;
    }
    return real(name);
}
