#!/usr/bin/env bash
# testbed.sh starts a private ClickHouse and a private PostgreSQL 15 cluster in a
# temporary folder, on free loopback ports, runs the given command with their
# addresses in the environment, then stops both and removes the folder on every
# exit path (success, failure, Ctrl-C, SIGTERM).
#
# Usage: scripts/testbed.sh [--no-clickhouse] [--no-postgres] -- COMMAND [ARG...]
#
# Environment given to COMMAND:
#   TRIBUTARY_TEST_CLICKHOUSE_ADDR   host:port of ClickHouse's native protocol
#   TRIBUTARY_TEST_CLICKHOUSE_HTTP   host:port of ClickHouse's HTTP interface
#   TRIBUTARY_TEST_PG_DSN            a superuser DSN of the PostgreSQL cluster
#   TRIBUTARY_TEST_PG_BIN            the folder of PostgreSQL's server binaries
#   TRIBUTARY_TEST_PG_DATA           the cluster's data folder (for restart tests)
#   TRIBUTARY_TEST_PG_USER           the OS user that owns the cluster
#
# Overrides: TRIBUTARY_PG_BIN (folder holding initdb and pg_ctl),
#            TRIBUTARY_CLICKHOUSE_SERVER (path of clickhouse-server).
set -euo pipefail

want_ch=1
want_pg=1
while [ $# -gt 0 ]; do
	case "$1" in
	--no-clickhouse) want_ch=0 ;;
	--no-postgres) want_pg=0 ;;
	--) shift; break ;;
	*) break ;;
	esac
	shift
done
if [ $# -eq 0 ]; then
	echo "usage: $0 [--no-clickhouse] [--no-postgres] -- COMMAND [ARG...]" >&2
	exit 2
fi

log() { echo "testbed: $*" >&2; }
die() { echo "testbed: error: $*" >&2; exit 1; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -n "$@"
	else
		return 1
	fi
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on now. Servers
# that lose a race for it fail to start and are retried with another port.
free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$(( (RANDOM * 32768 + RANDOM) % 30000 + 20000 ))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

wait_port() { # host port seconds pid
	local deadline=$(( $(date +%s) + $3 ))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if ! kill -0 "$4" 2>/dev/null; then return 1; fi
		if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
		sleep 0.2
	done
	return 1
}

root_dir=$(mktemp -d "${TMPDIR:-/tmp}/tributary-testbed.XXXXXX")
chmod 755 "$root_dir"
ch_pid=""
pg_started=0
pg_user=""
pg_bin=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$ch_pid" ] && kill -0 "$ch_pid" 2>/dev/null; then
		kill -TERM "$ch_pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$ch_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$ch_pid" 2>/dev/null || true
	fi
	if [ "$pg_started" = 1 ]; then
		run_pg "$pg_bin/pg_ctl" -D "$root_dir/pg/data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
	fi
	rm -rf "$root_dir"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- ClickHouse
start_clickhouse() {
	local server="${TRIBUTARY_CLICKHOUSE_SERVER:-}"
	if [ -z "$server" ]; then
		server=$(command -v clickhouse-server || true)
		[ -z "$server" ] && [ -x /usr/sbin/clickhouse-server ] && server=/usr/sbin/clickhouse-server
	fi
	if [ -z "$server" ]; then
		log "clickhouse-server is missing: installing clickhouse-server and clickhouse-client from Debian's packages"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
			die "apt-get update failed (installing ClickHouse needs root or password-less sudo)"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server clickhouse-client >&2 ||
			die "could not install clickhouse-server (needs root or password-less sudo)"
		server=$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)
		[ -x "$server" ] || die "clickhouse-server still missing after apt-get install"
	fi
	local dir="$root_dir/clickhouse" attempt tcp http
	for attempt in 1 2 3 4 5; do
		rm -rf "$dir"
		mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/log" "$dir/format_schemas"
		tcp=$(free_port) || die "no free port for ClickHouse"
		http=$(free_port) || die "no free port for ClickHouse"
		[ "$tcp" = "$http" ] && continue
		cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/server.log</log>
        <errorlog>$dir/log/error.log</errorlog>
        <size>100M</size>
        <count>1</count>
    </logger>
    <tcp_port>$tcp</tcp_port>
    <http_port>$http</http_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
EOF
		cat >"$dir/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <tributary>
            <password>tributary-secret</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </tributary>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
		(cd "$dir" && exec "$server" --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1) &
		ch_pid=$!
		if wait_port 127.0.0.1 "$tcp" 30 "$ch_pid"; then
			export TRIBUTARY_TEST_CLICKHOUSE_ADDR="127.0.0.1:$tcp"
			export TRIBUTARY_TEST_CLICKHOUSE_HTTP="127.0.0.1:$http"
			log "ClickHouse on 127.0.0.1:$tcp (pid $ch_pid)"
			return 0
		fi
		kill -KILL "$ch_pid" 2>/dev/null || true
		wait "$ch_pid" 2>/dev/null || true
		ch_pid=""
		log "ClickHouse did not start on port $tcp (attempt $attempt); log tail:"
		tail -n 5 "$dir/log/error.log" "$dir/log/stdout.log" >&2 2>/dev/null || true
	done
	die "ClickHouse failed to start"
}

# ---------------------------------------------------------------- PostgreSQL
run_pg() {
	if [ -n "$pg_user" ]; then
		runuser -u "$pg_user" -- "$@"
	else
		"$@"
	fi
}

find_pg_bin() {
	if [ -n "${TRIBUTARY_PG_BIN:-}" ]; then
		echo "$TRIBUTARY_PG_BIN"
		return
	fi
	local d
	if command -v initdb >/dev/null 2>&1; then
		dirname "$(readlink -f "$(command -v initdb)")"
		return
	fi
	for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			echo "$d"
			return
		fi
	done
}

start_postgres() {
	pg_bin=$(find_pg_bin)
	if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ] || [ ! -x "$pg_bin/pg_ctl" ]; then
		die "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql-15 or set TRIBUTARY_PG_BIN"
	fi
	if [ "$(id -u)" -eq 0 ]; then
		# initdb refuses to run as root: the cluster belongs to an unprivileged user.
		if id postgres >/dev/null 2>&1; then pg_user=postgres; else pg_user=nobody; fi
	fi
	local dir="$root_dir/pg" attempt port
	mkdir -p "$dir"
	[ -n "$pg_user" ] && chown "$pg_user" "$dir"
	run_pg "$pg_bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$root_dir/initdb.log" 2>&1 ||
		{ cat "$root_dir/initdb.log" >&2; die "initdb failed"; }
	cat >"$dir/data/pg_hba.conf" <<'EOF'
local   all          all                 trust
host    all          all  127.0.0.1/32   trust
host    replication  all  127.0.0.1/32   trust
EOF
	for attempt in 1 2 3 4 5; do
		port=$(free_port) || die "no free port for PostgreSQL"
		if run_pg "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
			-o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c wal_level=logical -c max_replication_slots=64 -c max_wal_senders=64 -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=128MB -c logical_decoding_work_mem=64MB" \
			start >/dev/null 2>&1; then
			pg_started=1
			export TRIBUTARY_TEST_PG_DSN="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
			export TRIBUTARY_TEST_PG_BIN="$pg_bin"
			export TRIBUTARY_TEST_PG_DATA="$dir/data"
			export TRIBUTARY_TEST_PG_USER="$pg_user"
			log "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data $dir/data)"
			return 0
		fi
		log "PostgreSQL did not start on port $port (attempt $attempt); log tail:"
		tail -n 5 "$dir/server.log" >&2 2>/dev/null || true
	done
	die "PostgreSQL failed to start"
}

[ "$want_ch" = 1 ] && start_clickhouse
[ "$want_pg" = 1 ] && start_postgres

set +e
"$@"
rc=$?
set -e
exit "$rc"
