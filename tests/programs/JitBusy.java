// A CPU-bound Java workload with distinctive method names, profiled by
// tests/jit_runtimes.rs. Runs for args[0] seconds (args[1] is a marker for the
// test's discovery). With PROFPIPE_READY_FILE set, creates that file once its hot
// methods have run for two seconds (long enough for C2 to compile them).

import java.nio.file.Files;
import java.nio.file.Paths;

public class JitBusy {
    static volatile long sink;

    static long profpipeJavaLeaf(long n) {
        long s = 0;
        for (long i = 0; i < n; i++) {
            s += (i * 31) ^ (s >>> 3);
        }
        return s;
    }

    static long profpipeJavaMid(long n) {
        long s = 0;
        for (int i = 0; i < 10; i++) {
            s += profpipeJavaLeaf(n);
        }
        return s;
    }

    public static void main(String[] args) throws Exception {
        long end = System.nanoTime() + Long.parseLong(args[0]) * 1_000_000_000L;
        long warm = System.nanoTime() + 2_000_000_000L;
        String ready = System.getenv("PROFPIPE_READY_FILE");
        while (System.nanoTime() < end) {
            sink += profpipeJavaMid(100_000);
            if (ready != null && System.nanoTime() > warm) {
                Files.write(Paths.get(ready), new byte[0]);
                ready = null;
            }
        }
    }
}
