-- ARGV: prefix, bus, pid -> removes the process's share (publishing leave events)
reap(ARGV[1], ARGV[2], ARGV[3])
return 1
