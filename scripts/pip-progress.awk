# Condenses `pip install -v` output to what a person wants to see while waiting:
# packages being fetched, and the compile step counter of llama.cpp's one-time build.
# On a terminal (tty=1) the counter updates in place; in a log it prints a line every 25 steps.
/\[[0-9]+\/[0-9]+\]/ {
    match($0, /\[[0-9]+\/[0-9]+\]/)
    step = substr($0, RSTART, RLENGTH)
    if (tty == 1) { printf "\r  compiling llama.cpp (once; pip caches the wheel) %s", step; built = 1 }
    else if (++seen % 25 == 1) print "  compiling llama.cpp (once; pip caches the wheel) " step
    fflush(); next
}
/^(Collecting|Successfully installed|Building wheel|Created wheel|Using cached)/ {
    if (built) { printf "\n"; built = 0 }
    print; fflush()
}
END { if (built) printf "\n" }
