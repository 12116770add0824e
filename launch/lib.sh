# shellcheck shell=bash
# Helpers shared by the launch scripts (sourced, not executed).
#
#   quote ARG        shell-quote one word so that a POSIX shell reads it back unchanged
#                    ('single quotes' where needed; $'...' only for control characters)
#   quote_posix ARG  the same, but always POSIX (for strings that a remote / batch `sh` runs)
#   join_quoted ...  the words quoted and joined by single spaces (no trailing space)
#   run_or_print ... print the command (dry run) or echo it to stderr and run it
#   take_value ...   option parsing: `--flag VALUE` or `--flag=VALUE`

# Words made only of these characters need no quoting.
_GENXD_SAFE_WORD='^[A-Za-z0-9_./:=@%+,-]+$'

die() {
    printf '%s: error: %s\n' "${0##*/}" "$*" >&2
    printf "Run '%s --help' for usage.\n" "${0##*/}" >&2
    exit 2
}

quote_posix() {
    local s=$1
    if [[ -n $s && $s =~ $_GENXD_SAFE_WORD ]]; then
        printf '%s' "$s"
    else
        printf "'%s'" "${s//\'/\'\\\'\'}"
    fi
}

quote() {
    local s=$1
    if [[ $s == *[[:cntrl:]]* ]]; then
        printf '%q' "$s"
    else
        quote_posix "$s"
    fi
}

# join_quoted [--posix] WORD...
join_quoted() {
    local fn=quote sep='' w
    if [[ ${1-} == --posix ]]; then
        fn=quote_posix
        shift
    fi
    for w in "$@"; do
        printf '%s' "$sep"
        "$fn" "$w"
        sep=' '
    done
}

# A remote path: a leading `~/` stays unquoted so that the remote shell expands it.
quote_path_posix() {
    local p=$1
    # shellcheck disable=SC2088  # the tilde is meant literally here
    if [[ $p == '~/'* ]]; then
        printf '%s' '~/'
        quote_posix "${p#\~/}"
    else
        quote_posix "$p"
    fi
}

# run_or_print CMD...: with DRY_RUN=1 print the command, one line, quoted; otherwise log it to
# stderr ("+ cmd") and run it.
run_or_print() {
    if [[ ${DRY_RUN:-0} == 1 ]]; then
        join_quoted "$@"
        printf '\n'
    else
        printf '+ %s\n' "$(join_quoted "$@")" >&2
        "$@"
    fi
}

# take_value "$@": for `--flag=VALUE` sets OPTVAL=VALUE, OPTSHIFT=1; for `--flag VALUE` sets
# OPTVAL=VALUE, OPTSHIFT=2; dies when the value is missing.
# shellcheck disable=SC2034  # OPTVAL and OPTSHIFT are read by the caller
take_value() {
    if [[ $1 == --*=* ]]; then
        OPTVAL=${1#*=}
        OPTSHIFT=1
    elif (($# >= 2)); then
        OPTVAL=$2
        OPTSHIFT=2
    else
        die "option $1 needs a value"
    fi
}

require() {  # require VALUE "description (--flag or ENV)"
    [[ -n $1 ]] || die "missing required setting: $2"
}

require_positive_int() {  # require_positive_int VALUE NAME
    [[ $1 =~ ^[1-9][0-9]*$ ]] || die "$2 must be a positive integer, got '$1'"
}
