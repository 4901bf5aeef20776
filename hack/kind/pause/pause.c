/* The pod sandbox ("pause") process of the kind node image: holds the pod's namespaces, reaps
 * orphaned children (it is PID 1 when the pod shares its PID namespace) and exits 0 on SIGINT or
 * SIGTERM. Built statically by hack/kind/build-node-image.sh; no other behaviour. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("elasticjob-pause");
        return 0;
    }
    if (getpid() != 1)
        fputs("pause: warning: not PID 1\n", stderr);
    struct sigaction term = {.sa_handler = on_term};
    struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGINT, &term, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0 ||
        sigaction(SIGCHLD, &child, NULL) < 0)
        return 1;
    for (;;)
        pause();
}
