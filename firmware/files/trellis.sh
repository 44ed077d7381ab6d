#!/bin/sh
# /usr/share/trellis/trellis.sh: shell functions the Trellis init scripts, the first-boot
# script and the prerm share, so each rule lives in one place: the dnsmasq forward of the
# mesh zone (it follows trellis.agent.dns_port at every start of the agent) and how an
# address and a port become one host:port (IPv6 literals in brackets).
# Sourced, never run. TRELLIS_ROOT only exists so tests can point it at a fake root (the
# dnsmasq init script); nothing on a router sets it.

TRELLIS_ZONE=trellis.home.arpa

# "host:port" for a daemon flag or a client: an IPv6 literal gets brackets, so listen '::'
# and port 7443 give [::]:7443, not :::7443 (which no socket address parser accepts).
trellis_hostport() {
	case "$1" in
	\[*) echo "$1:$2" ;;
	*:*) echo "[$1]:$2" ;;
	*) echo "$1:$2" ;;
	esac
}

# Where a program on this router reaches a daemon that listens on address $1: the wildcard
# addresses mean the loopback of their family, any other address is itself.
trellis_local_addr() {
	case "$1" in
	'' | 0.0.0.0) echo 127.0.0.1 ;;
	:: | '[::]') echo ::1 ;;
	*) echo "$1" ;;
	esac
}

# dnsmasq's `server` entry that sends the mesh zone to the agent's DNS on port $1.
trellis_dns_server() {
	echo "/$TRELLIS_ZONE/127.0.0.1#$1"
}

# Edit (without committing) dnsmasq's first instance so the zone goes to port $1 only
# ($1 empty: to no port at all), and print "changed" if anything was edited. A subshell:
# `set -f` keeps a `*` in someone else's server entry from being globbed.
trellis_dnsmasq_edit() (
	set -f
	want=
	[ -n "$1" ] && want=$(trellis_dns_server "$1")
	have=
	changed=
	# `uci get` prints a list's items separated by blanks (openwrt/uci cli.c); server
	# entries hold no blanks.
	for s in $(uci -q get 'dhcp.@dnsmasq[0].server'); do
		case "$s" in
		"/$TRELLIS_ZONE/"*)
			if [ -n "$want" ] && [ "$s" = "$want" ] && [ -z "$have" ]; then
				have=1
			else
				uci -q del_list "dhcp.@dnsmasq[0].server=$s"
				changed=1
			fi
			;;
		esac
	done
	if [ -n "$want" ] && [ -z "$have" ]; then
		uci add_list "dhcp.@dnsmasq[0].server=$want"
		changed=1
	fi
	# dnsmasq's rebind protection drops answers with private addresses from upstream
	# servers; mesh names resolve to LAN addresses, so the zone is exempted while forwarded.
	rebind=
	for s in $(uci -q get 'dhcp.@dnsmasq[0].rebind_domain'); do
		[ "$s" = "$TRELLIS_ZONE" ] && rebind=1
	done
	if [ -n "$want" ] && [ -z "$rebind" ]; then
		uci add_list "dhcp.@dnsmasq[0].rebind_domain=$TRELLIS_ZONE"
		changed=1
	elif [ -z "$want" ] && [ -n "$rebind" ]; then
		uci -q del_list "dhcp.@dnsmasq[0].rebind_domain=$TRELLIS_ZONE"
		changed=1
	fi
	[ -n "$changed" ] && echo changed
	true
)

# Point dnsmasq at the agent's DNS on port $1 ($1 empty: take the zone out again). Commits
# and reloads a running dnsmasq only when something changed, so a start with the same port
# costs two `uci get`s. A router without dnsmasq (a dumb AP) has nothing to do.
trellis_dnsmasq_follow() {
	uci -q get 'dhcp.@dnsmasq[0]' >/dev/null || return 0
	[ "$(trellis_dnsmasq_edit "$1")" = changed ] || return 0
	uci -q commit dhcp
	if "${TRELLIS_ROOT:-}/etc/init.d/dnsmasq" running 2>/dev/null; then
		"${TRELLIS_ROOT:-}/etc/init.d/dnsmasq" reload
	fi
	return 0
}
