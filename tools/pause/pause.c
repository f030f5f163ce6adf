// pause: the process that holds a pod sandbox's namespaces open. It does nothing until it is told
// to stop (SIGINT or SIGTERM, exit 0), and reaps any child re-parented to it (as PID 1 of the pod's
// PID namespace when that is shared). Built static, it is the whole of the node tests' pause image.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static int on(int sig, void (*handler)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL);
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("pause (nmi node tests)");
    return 0;
  }
  if (getpid() != 1) {
    fputs("pause: warning: not PID 1\n", stderr);
  }
  if (on(SIGINT, stop, 0) != 0 || on(SIGTERM, stop, 0) != 0 ||
      on(SIGCHLD, reap, SA_NOCLDSTOP | SA_RESTART) != 0) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;) {
    pause();
  }
}
