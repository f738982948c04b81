# Sourced by the scripts: `step NAME` announces a step and prints how long the one before it
# took; `steps_done` closes the last one and, in the script that started the run, prints every
# step of the run (nested scripts included: they append to the same file) as a table. CI reads
# these to see where its time goes.

STEP_NAME=""
STEP_START=0

step_close() {
    [ -n "$STEP_NAME" ] || return 0
    local took=$(($(date +%s) - STEP_START))
    printf '<== %s: %ss\n' "$STEP_NAME" "$took"
    printf '%s\t%s\n' "$took" "$STEP_NAME" >>"$STEP_LOG"
    STEP_NAME=""
}

step() {
    # One file for the whole run, made by its first step and shared with the scripts it calls
    # (made here, not when sourced: sourcing alone must leave nothing behind).
    if [ -z "${STEP_LOG:-}" ]; then
        STEP_LOG="$(mktemp /tmp/ultracloud-steps.XXXXXX)"
        STEP_LOG_OWNER=$$
        export STEP_LOG
    fi
    step_close
    STEP_NAME="$*"
    STEP_START=$(date +%s)
    printf '\n==> %s\n' "$*"
}

steps_done() {
    step_close
    if [ "${STEP_LOG_OWNER:-}" = "$$" ]; then
        steps_table
        rm -f "$STEP_LOG"
    fi
}

# The table of every step so far, in the order they finished, with minutes and seconds.
steps_table() {
    [ -s "$STEP_LOG" ] || return 0
    printf '\n%-64s %8s\n' "STEP" "TIME"
    while IFS="$(printf '\t')" read -r took name; do
        printf '%-64s %5dm%02ds\n' "$name" $((took / 60)) $((took % 60))
    done <"$STEP_LOG"
}
