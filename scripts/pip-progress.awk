# Condenses `pip install -v` output to what a person wants to see while waiting:
# packages being fetched, and the compile step counter of llama.cpp's one-time build.
/\[[0-9]+\/[0-9]+\]/ {
    match($0, /\[[0-9]+\/[0-9]+\]/)
    printf "\r  compiling llama.cpp (once; pip caches the wheel) %s", substr($0, RSTART, RLENGTH)
    fflush(); built = 1; next
}
/^(Collecting|Successfully installed|Building wheel|Created wheel|Using cached)/ {
    if (built) { printf "\n"; built = 0 }
    print; fflush()
}
END { if (built) printf "\n" }
