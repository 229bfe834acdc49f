# A CPU-bound Ruby workload with distinctive method names, profiled by
# tests/runtime_sources.rs. Runs until killed (or for ARGV[0] seconds). With
# PROFPIPE_READY_FILE set, creates that file once its hot methods have run.

def profpipe_rb_leaf(n)
  total = 0
  n.times { |i| total += i * i }
  total
end

def profpipe_rb_mid
  profpipe_rb_leaf(20_000)
end

limit = ARGV[0] ? ARGV[0].to_f : nil
start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
ready = ENV["PROFPIPE_READY_FILE"]
loop do
  break if limit && Process.clock_gettime(Process::CLOCK_MONOTONIC) - start >= limit
  profpipe_rb_mid
  if ready
    File.write(ready, "")
    ready = nil
  end
end
