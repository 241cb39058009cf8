# shellcheck shell=sh
# Shared by the guest's CGI endpoints (sourced, not served).
# Query values are restricted to digits or a fixed word list before use.
printf 'Content-Type: text/plain\r\n\r\n'
param() {
  echo "$QUERY_STRING" | tr '&' '\n' | sed -n "s/^$1=//p" | head -n 1
}
num() { case "$1" in ''|*[!0-9]*) return 1 ;; *) return 0 ;; esac; }
fail() { echo "error: $*"; exit 0; }
