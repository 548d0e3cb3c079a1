# bench/machine.sh — sourced by the bench scripts: a log line, and how busy the shared machine
# is, so that each measurement can wait for quiet and say how much of the CPUs others used.

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Percent of all CPUs busy over 2 s (everything on the machine).
cpu_busy() {
    local a b
    a=($(head -1 /proc/stat))
    sleep 2
    b=($(head -1 /proc/stat))
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    [ "$total" -gt 0 ] || { echo 0; return; }
    echo $(( 100 * (total - idle) / total ))
}

# "busy total" jiffies of all CPUs (busy counts steal: time the hypervisor gave to other guests).
stat_snap() {
    awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat
}

# Wait until the CPUs are (nearly) idle, at most QUIET_WAIT s; prints the last busy percent.
wait_quiet() {
    local waited=0 busy
    busy=$(cpu_busy)
    while [ "$busy" -gt 15 ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
        [ "$waited" -eq 0 ] && log "CPUs ${busy}% busy (other processes): waiting up to ${QUIET_WAIT}s for quiet"
        sleep 8
        waited=$((waited + 10))
        busy=$(cpu_busy)
    done
    [ "$busy" -gt 15 ] && log "still ${busy}% busy after ${waited}s: measuring anyway (see the oth% column)"
    echo "$busy"
}
