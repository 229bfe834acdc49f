/* A CPU-bound program with distinctive frames for the perf source tests:
 * main -> profpipe_hot_mid -> profpipe_hot_leaf. Runs for argv[1] seconds.
 * Built with `cc -O1 -fno-omit-frame-pointer` so frame-pointer unwinding works. */
#include <stdlib.h>
#include <time.h>

volatile unsigned long profpipe_sink;

/* Never called in practice. Its call site keeps profpipe_hot_leaf from being a leaf
 * function: GCC omits the frame pointer in leaf functions even with
 * -fno-omit-frame-pointer (-momit-leaf-frame-pointer), and perf's frame-pointer
 * unwinding would then skip profpipe_hot_mid. */
__attribute__((noinline)) void profpipe_hot_rare(unsigned long x) {
    profpipe_sink = x;
}

__attribute__((noinline)) unsigned long profpipe_hot_leaf(unsigned long x) {
    for (int i = 0; i < 100000; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        if (x == 0) {
            profpipe_hot_rare(x);
        }
    }
    return x;
}

__attribute__((noinline)) unsigned long profpipe_hot_mid(unsigned long x) {
    x = profpipe_hot_leaf(x);
    profpipe_sink = x;
    return x ^ 1;
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 10;
    time_t end = time(NULL) + seconds;
    unsigned long x = 1;
    while (time(NULL) < end) {
        x = profpipe_hot_mid(x);
    }
    return (int)(x & 1) * 0;
}
