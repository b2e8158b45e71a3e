#!/usr/bin/env bash
#
# Prints what a lab capture contains, counted with tshark: packets, TCP connection attempts and
# how each was answered, HTTP status codes, DNS queries with their rcodes, and, for captures on
# several interfaces, how many packets were captured more than once.
#
#   facts.sh FILE...
#
# Copies of one packet (the same packet seen on the pod veth, on br0 and on the uplink of a
# node-wide "any" capture) are counted once everywhere except in the copies section: attempts
# are keyed by ISN, SYN transmissions by ISN and TSval, HTTP messages by TCP sequence number,
# DNS messages by client port and id.

set -euo pipefail

# tshark with the options every query here shares; absolute sequence numbers throughout, also
# in the TCP header quoted by ICMP errors. A file that ends in the middle of a packet makes
# tshark fail after it has printed the complete packets; summary() reports the cut.
ts() {
	local file=$1
	shift
	tshark -r "$file" -n -o tcp.relative_sequence_numbers:FALSE "$@" 2>/dev/null || true
}

summary() {
	local f=$1
	{ capinfos -t -E -c -F -M "$f" 2>&1 || true; } | awk -F': *' '
		/^File type/ { type = $2 }
		/^File encapsulation/ { encap = $2 }
		/^File timestamp precision/ { prec = $2 }
		/^Number of packets/ { n = $2 }
		/cut short/ { cut = ", last packet cut short" }
		END { printf "%s, %s, %s, timestamps in %s%s\n", n " packets", type, encap, prec, cut }'
}

tcp_attempts() {
	local f=$1
	{
		# SYN sent: key dst port sport isn, plus tsval to tell retransmissions from copies.
		ts "$f" -Y 'tcp.flags.syn == 1 && tcp.flags.ack == 0 && !icmp && !icmpv6' -T fields \
			-e ip.dst -e ipv6.dst -e tcp.dstport -e tcp.srcport -e tcp.seq_raw -e tcp.options.timestamp.tsval |
			awk -F'\t' '{ print "S\t" $1 $2 "\t" $3 "\t" $4 "\t" $5 "\t" $6 }'
		# SYN-ACK and RST from the destination, acknowledging ISN + 1.
		ts "$f" -Y '(tcp.flags.syn == 1 && tcp.flags.ack == 1) || (tcp.flags.reset == 1 && tcp.flags.ack == 1)' \
			-T fields -e ip.src -e ipv6.src -e tcp.srcport -e tcp.dstport -e tcp.ack_raw -e tcp.flags.syn |
			awk -F'\t' '{
				isn = $5 - 1; if (isn < 0) isn += 4294967296
				printf "%s\t%s\t%s\t%s\t%.0f\n", ($6 == "1" ? "A" : "R"), $1 $2, $3, $4, isn
			}'
		# ICMP and ICMPv6 errors quoting a SYN: outer source, inner destination.
		ts "$f" -Y '(icmp.type == 3 || icmp.type == 11 || icmpv6.type < 128) && tcp.flags.syn == 1' -T fields \
			-e ip.src -e ip.dst -e ipv6.src -e ipv6.dst -e icmp.type -e icmp.code -e icmpv6.type -e icmpv6.code \
			-e tcp.dstport -e tcp.srcport -e tcp.seq |
			awk -F'\t' '{
				split($1 $3, src, ","); n = split($2 $4, dst, ",")
				v6 = ($1 == "")
				print "I\t" dst[n] "\t" $9 "\t" $10 "\t" $11 "\t" (v6 ? "ICMPv6 " $7 "/" $8 : "ICMP " $5 "/" $6) " from " src[1]
			}'
	} | awk -F'\t' '
		$1 == "S" {
			k = $2 SUBSEP $3 SUBSEP $4 SUBSEP $5
			if (!(k in isn)) { isn[k] = 1; order[++n] = k; dest[k] = ($2 ~ /:/ ? "[" $2 "]" : $2) ":" $3 }
			tx[k SUBSEP $6] = 1
			next
		}
		$1 == "A" { synack[$2 SUBSEP $3 SUBSEP $4 SUBSEP $5] = 1; next }
		$1 == "R" { rst[$2 SUBSEP $3 SUBSEP $4 SUBSEP $5] = 1; next }
		$1 == "I" { icmp[$2 SUBSEP $3 SUBSEP $4 SUBSEP $5] = $6; next }
		END {
			for (t in tx) { split(t, p, SUBSEP); syns[p[1] SUBSEP p[2] SUBSEP p[3] SUBSEP p[4]]++ }
			printf "%-24s %-9s %-10s %s\n", "destination", "attempts", "SYNs sent", "answer"
			for (i = 1; i <= n; i++) {
				k = order[i]; d = dest[k]
				if (!(d in attempts)) dorder[++m] = d
				attempts[d]++; nsyn[d] += syns[k]
				a = (k in synack) ? "SYN-ACK" : (k in rst) ? "RST" : (k in icmp) ? icmp[k] : "nothing"
				if (index(answers[d], a) == 0) answers[d] = answers[d] (answers[d] == "" ? "" : ", ") a
			}
			for (i = 1; i <= m; i++) {
				d = dorder[i]
				printf "%-24s %-9d %-10d %s\n", d, attempts[d], nsyn[d], answers[d]
			}
		}'
}

# Status codes inside a CONNECT tunnel are data to tshark; they are read from the payload
# ("HTTP/1.1 200": the digits are bytes 10 to 12). The first sighting of a segment decides, as
# tshark dissects only that one; later copies are retransmissions to it.
http_messages() {
	local f=$1
	ts "$f" -Y 'http.request || http.response || (http && data && tcp.payload[0:5] == "HTTP/")' -T fields \
		-e ip.src -e ipv6.src -e ip.dst -e ipv6.dst -e tcp.srcport -e tcp.dstport -e tcp.seq_raw \
		-e http.request.method -e http.request.uri -e http.response.code -e tcp.payload |
		awk -F'\t' '
			function ep(a, p) { return (a ~ /:/ ? "[" a "]" : a) ":" p }
			!seen[$1 $2, $3 $4, $5, $6, $7]++ {
				if ($8 != "") printf "%-34s %s %s\n", $1 $2 " -> " ep($3 $4, $6), $8, $9
				else if ($10 != "") printf "%-34s %s\n", ep($1 $2, $5) " -> " $3 $4, $10
				else printf "%-34s %s (inside the CONNECT tunnel)\n", ep($1 $2, $5) " -> " $3 $4,
					substr($11, 20, 1) substr($11, 22, 1) substr($11, 24, 1)
			}'
}

dns_queries() {
	local f=$1
	ts "$f" -Y 'dns' -T fields -e ip.src -e ipv6.src -e ip.dst -e ipv6.dst -e udp.srcport -e udp.dstport \
		-e tcp.srcport -e tcp.dstport -e dns.id -e dns.flags.response -e dns.qry.name -e dns.qry.type \
		-e dns.flags.rcode -e dns.a -e dns.aaaa |
		awk -F'\t' '
			BEGIN {
				split("1 A 2 NS 5 CNAME 6 SOA 12 PTR 15 MX 16 TXT 28 AAAA 33 SRV 65 HTTPS", t, " ")
				for (i = 1; i in t; i += 2) type[t[i]] = t[i + 1]
				split("0 NOERROR 1 FORMERR 2 SERVFAIL 3 NXDOMAIN 4 NOTIMP 5 REFUSED", r, " ")
				for (i = 1; i in r; i += 2) rcode[r[i]] = r[i + 1]
			}
			{
				proto = ($5 != "") ? "udp" : "tcp"
				sport = ($5 != "") ? $5 : $7; dport = ($5 != "") ? $6 : $8
				qt = ($12 in type) ? type[$12] : $12
				if ($10 == "0") {
					k = $1 $2 SUBSEP sport SUBSEP $9
					if (k in q) next
					q[k] = ++n
					line[n] = sprintf("%-3d %s %-12s %-58s %-5s", n, proto, $3 $4, $11, qt)
				} else {
					k = $3 $4 SUBSEP dport SUBSEP $9
					if (!(k in q) || (k in answered)) next
					answered[k] = 1
					ans = $14 $15; gsub(",", " ", ans)
					res[q[k]] = (($13 in rcode) ? rcode[$13] : $13) (ans != "" ? "  " ans : ($13 == "0" ? " (no data)" : ""))
				}
			}
			END {
				for (i = 1; i <= n; i++) print line[i] " " ((i in res) ? res[i] : "no response")
			}'
}

# Groups the packets that are one packet captured several times: same IP and transport header
# fields apart from TTL / hop limit and checksums, within 50 ms. Each group is labelled with the
# interfaces (SLL2 ifindex) or packet types (SLL) it was seen with.
copies() {
	local f=$1 tmp
	tmp=$(mktemp)
	ts "$f" -T fields -E occurrence=a -e frame.time_epoch -e sll.ifindex -e sll.pkttype \
		-e ip.src -e ip.dst -e ip.id -e ip.len -e ip.proto -e ipv6.src -e ipv6.dst -e ipv6.plen -e ipv6.nxt \
		-e tcp.srcport -e tcp.dstport -e tcp.seq_raw -e tcp.ack_raw -e tcp.flags -e tcp.options.timestamp.tsval \
		-e udp.srcport -e udp.dstport -e udp.length -e dns.id -e icmp.type -e icmp.code \
		-e icmpv6.type -e icmpv6.code -e icmpv6.nd.ns.target_address -e icmpv6.nd.na.target_address \
		-e arp.opcode -e arp.src.hw_mac -e arp.src.proto_ipv4 -e arp.dst.proto_ipv4 |
		awk -F'\t' '{
			if ($13 != "") $22 = ""  # DNS over TCP: tshark leaves copies undissected
			key = $4; for (i = 5; i <= NF; i++) key = key "|" $i
			where = ($2 != "") ? "if" $2 "/" $3 : ($3 != "") ? "/" $3 : "-"
			print key "\t" $1 "\t" where
		}' |
		sort -t$'\t' -k1,1 -k2,2n |
		awk -F'\t' '
			function flush(  i, j, t, out) {
				if (!n) return
				for (i = 2; i <= n; i++)
					for (j = i; j > 1 && w[j - 1] > w[j]; j--) { t = w[j]; w[j] = w[j - 1]; w[j - 1] = t }
				out = w[1]; for (i = 2; i <= n; i++) out = out " " w[i]
				print n "\t" out
			}
			{
				if ($1 != key || $2 - t0 > 0.05) { flush(); key = $1; t0 = $2; n = 0 }
				w[++n] = $3
			}
			END { flush() }' >"$tmp"
	printf 'distinct packets: %d\n' "$(wc -l <"$tmp")"
	cut -f1 "$tmp" | sort -n | uniq -c | awk '{ printf "  captured %d time(s): %d\n", $2, $1 }'
	echo "  by where they were seen (ifN = SLL2 ifindex, /N = SLL packet type):"
	awk -F'\t' '{ print $1 " x  " $2 }' "$tmp" | sort | uniq -c | awk '{ c = $1; $1 = ""; printf "   %-44s %d\n", $0, c }'
	rm -f "$tmp"
}

main() {
	[[ $# -ge 1 ]] || {
		echo "usage: ${0##*/} FILE..." >&2
		exit 2
	}
	local f
	for f in "$@"; do
		echo "## ${f##*/}: $(summary "$f")"
		echo
		echo "### TCP connection attempts"
		tcp_attempts "$f"
		echo
		echo "### HTTP"
		http_messages "$f"
		echo
		echo "### DNS queries, in order (transport, server, name, type, rcode and answers)"
		dns_queries "$f"
		echo
		echo "### Copies"
		copies "$f"
		echo
	done
}

main "$@"
