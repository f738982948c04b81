# Sourced by the scripts: `step NAME` announces a step and prints how long the one before it
# took; `steps_done` closes the last one. CI reads these lines to see where its time goes.

STEP_NAME=""
STEP_START=0

step_close() {
    [ -n "$STEP_NAME" ] || return 0
    printf '<== %s: %ss\n' "$STEP_NAME" $(($(date +%s) - STEP_START))
    STEP_NAME=""
}

step() {
    step_close
    STEP_NAME="$*"
    STEP_START=$(date +%s)
    printf '\n==> %s\n' "$*"
}

steps_done() { step_close; }
