/*
 * A user-space delay line for the WAN lab (tools/wanlab): this kernel has no netem, so the one-way
 * delay of the emulated WAN is made here. Two TUN devices, one in each of two network namespaces;
 * every packet read from one is written to the other `delay` milliseconds later (plus up to
 * `jitter`, never reordered: a packet never leaves before the one read before it). Rate caps (tbf)
 * and loss (nftables) are set on the devices by the lab, not here.
 *
 *   delayline NS_A DEV_A NS_B DEV_B DELAY_MS [JITTER_MS]
 *
 * NS_* are names under /run/netns (ip netns add). The devices are created (IFF_TUN, no packet
 * info) and live while this runs; it prints "ready" on stdout once both exist, then forwards until
 * SIGTERM/SIGINT. Per direction at most QUEUE packets wait: beyond, new packets are dropped and
 * counted; the counts are printed on stderr at exit.
 *
 * Build: cc -O2 -o delayline delayline.c (tools/wanlab/wanlab.mjs does it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MTU 9216     /* largest packet carried: the lab's devices have an MTU of 1500 */
#define QUEUE 16384  /* packets waiting per direction, at most (a slot is allocated when first used) */

typedef struct {
  uint64_t due_ns;
  uint32_t len;
  uint8_t *data;
} packet;

typedef struct {
  int in, out;
  packet q[QUEUE];
  unsigned head, count;
  uint64_t last_due, forwarded, dropped;
} direction;

static volatile sig_atomic_t stopping = 0;
static void on_signal(int s) {
  (void)s;
  stopping = 1;
}

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Open a TUN device named `dev` in the namespace /run/netns/`ns`. */
static int open_tun(const char *ns, const char *dev) {
  char path[256];
  snprintf(path, sizeof path, "/run/netns/%s", ns);
  int nsfd = open(path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
    fprintf(stderr, "delayline: namespace %s: %s\n", ns, strerror(errno));
    exit(2);
  }
  close(nsfd);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
  if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) != 0) {
    fprintf(stderr, "delayline: tun %s in %s: %s\n", dev, ns, strerror(errno));
    exit(2);
  }
  return fd;
}

/* Read every packet waiting on d->in into the queue, due `delay` (+ jitter) from now. */
static void take(direction *d, uint64_t delay_ns, uint64_t jitter_ns) {
  for (;;) {
    if (d->count == QUEUE) {
      uint8_t scratch[MTU];
      if (read(d->in, scratch, sizeof scratch) <= 0) return;
      d->dropped++;
      continue;
    }
    packet *p = &d->q[(d->head + d->count) % QUEUE];
    if (p->data == NULL) p->data = malloc(MTU);
    ssize_t n = read(d->in, p->data, MTU);
    if (n <= 0) return;
    uint64_t due = now_ns() + delay_ns + (jitter_ns ? (uint64_t)rand() % jitter_ns : 0);
    if (due < d->last_due) due = d->last_due; /* never reordered */
    d->last_due = due;
    p->due_ns = due;
    p->len = (uint32_t)n;
    d->count++;
  }
}

/* Write out every packet that is due; returns ns until the next one is (or -1 when none waits). */
static int64_t give(direction *d) {
  uint64_t t = now_ns();
  while (d->count > 0) {
    packet *p = &d->q[d->head];
    if (p->due_ns > t) return (int64_t)(p->due_ns - t);
    if (write(d->out, p->data, p->len) < 0 && errno == EAGAIN) return 100000; /* device full: soon */
    d->forwarded++;
    d->head = (d->head + 1) % QUEUE;
    d->count--;
  }
  return -1;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: delayline NS_A DEV_A NS_B DEV_B DELAY_MS [JITTER_MS]\n");
    return 2;
  }
  uint64_t delay_ns = (uint64_t)(atof(argv[5]) * 1e6);
  uint64_t jitter_ns = argc > 6 ? (uint64_t)(atof(argv[6]) * 1e6) : 0;
  int a = open_tun(argv[1], argv[2]);
  int b = open_tun(argv[3], argv[4]);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  static direction ab, ba;
  ab.in = a;
  ab.out = b;
  ba.in = b;
  ba.out = a;
  printf("ready\n");
  fflush(stdout);
  while (!stopping) {
    int64_t w1 = give(&ab), w2 = give(&ba);
    int64_t wait = w1 < 0 ? w2 : w2 < 0 ? w1 : (w1 < w2 ? w1 : w2);
    struct pollfd fds[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 0};
    if (wait >= 0) {
      ts.tv_sec = wait / 1000000000;
      ts.tv_nsec = wait % 1000000000;
    } else {
      ts.tv_sec = 1;
    }
    if (ppoll(fds, 2, &ts, NULL) < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) take(&ab, delay_ns, jitter_ns);
    if (fds[1].revents & POLLIN) take(&ba, delay_ns, jitter_ns);
  }
  fprintf(stderr, "delayline: %s→%s forwarded %llu dropped %llu; %s→%s forwarded %llu dropped %llu\n", argv[2],
          argv[4], (unsigned long long)ab.forwarded, (unsigned long long)ab.dropped, argv[4], argv[2],
          (unsigned long long)ba.forwarded, (unsigned long long)ba.dropped);
  return 0;
}
