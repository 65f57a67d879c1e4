# shellcheck shell=bash
# The one writer of duetd node configs (INI) for the shell tests, the
# benchmarks and scripts/demo.sh. Sourced, not run; tests/lib.sh and
# bench/lib.sh source it.
#
#   write_node_config FILE ID DIR [ITEM...]
#       writes FILE: a [node] section with
#           id = ID, shelf = DIR/ID-shelf, control = DIR/ID.sock,
#           log_level = ${DUET_LOG_LEVEL:-info}, and realtime = $DUET_REALTIME
#           when that is set (tests/lib.sh sets off)
#       then the ITEMs, in order. An ITEM is
#           "[section]"        later settings go to that section (a section
#                              named again is continued, not repeated)
#           "key=value" or "key = value"
#                              a setting of the current section ([node] before
#                              any header). A [node] default of the same key
#                              (id, shelf, control, log_level) is replaced;
#                              "key=" with no value drops that default. Any
#                              other key is added as given (so repeated keys,
#                              e.g. several "link = ...", stay in order)
#           anything else      (a comment, a deliberately odd line) kept as is
#                              in the current section
#       It creates no directory. FILE "-" is standard output.
#
#   write_cluster_key FILE
#       a fresh interconnect secret (64 hex digits) in FILE
#
# Example: write_node_config "$T/a.conf" a "$T" log_level=warn \
#              "[nbd]" "listen = 127.0.0.1:$P" "[ic]" "partner = b" ...

write_node_config() {
	local file=$1 id=$2 dir=$3
	shift 3
	local -a order=(node)
	local -A body=()
	local -A def=([id]=$id [shelf]=$dir/$id-shelf [control]=$dir/$id.sock
		[log_level]=${DUET_LOG_LEVEL:-info} [realtime]=${DUET_REALTIME:-})
	local sec=node item k v
	for item in "$@"; do
		if [[ $item =~ ^\[([^]]+)\]$ ]]; then
			sec=${BASH_REMATCH[1]}
			[[ " ${order[*]} " == *" $sec "* ]] || order+=("$sec")
			continue
		fi
		if [[ $item =~ ^[[:space:]]*([A-Za-z0-9_.-]+)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
			k=${BASH_REMATCH[1]} v=${BASH_REMATCH[2]}
			if [ "$sec" = node ] && [ -n "${def[$k]+set}" ]; then
				def[$k]=$v
				continue
			fi
			item="$k = $v"
		fi
		body[$sec]+="$item"$'\n'
	done
	local text=""
	for sec in "${order[@]}"; do
		text+="[$sec]"$'\n'
		if [ "$sec" = node ]; then
			for k in id shelf control log_level realtime; do
				[ -z "${def[$k]}" ] || text+="$k = ${def[$k]}"$'\n'
			done
		fi
		text+=${body[$sec]:-}
	done
	if [ "$file" = - ]; then
		printf '%s' "$text"
	else
		printf '%s' "$text" >"$file"
	fi
}

# write_cluster_key FILE: a fresh interconnect secret (64 hex digits, no
# newline) in FILE, mode 0600 (duetd refuses a key others may read), for
# [ic] secret_file.
write_cluster_key() {
	(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1")
	chmod 600 "$1"
}
