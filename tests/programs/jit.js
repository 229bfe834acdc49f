// A CPU-bound Node.js program for the perf.data tests: run with --perf-basic-prof so
// V8 writes /tmp/perf-PID.map and perf can name the JIT-compiled frames. Runs for
// argv[2] seconds.
function profpipeJsFib(n) {
  return n < 2 ? n : profpipeJsFib(n - 1) + profpipeJsFib(n - 2);
}
const end = Date.now() + Number(process.argv[2] || 2) * 1000;
let s = 0;
while (Date.now() < end) {
  s += profpipeJsFib(22);
}
console.log(s);
