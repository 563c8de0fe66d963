#!/usr/bin/env bash
# testbed.sh starts a private ClickHouse 18.16 (Debian's), a private modern
# ClickHouse (26.7, the clickhouse-local of the npm package
# @chdb/lib-linux-x64-gnu serving on loopback) and a private PostgreSQL 15
# cluster in a temporary folder, on free loopback ports, runs the given command
# with their addresses in the environment, then stops them and removes the
# folder on every exit path (success, failure, Ctrl-C, SIGTERM).
#
# Usage: scripts/testbed.sh [--no-clickhouse] [--no-modern] [--no-cluster] [--no-postgres] -- COMMAND [ARG...]
#
# Unless --no-cluster (or --no-clickhouse) is given, it also starts a private
# ZooKeeper (Debian's zookeeper package, installed when missing) and four more
# ClickHouse 18.16 servers forming two clusters, defined in every node's
# remote_servers: tributary_1x2 (one shard, replicas a and b) and
# tributary_2x1 (two shards c and d, one replica each). Each node runs under a
# supervisor that restarts it after it dies, unless the file "hold" exists in
# its folder: a test creates it, SIGKILLs the node (its pid is in the file
# "pid"), and removes it to let the node come back.
#
# Environment given to COMMAND:
#   TRIBUTARY_TEST_CLICKHOUSE_ADDR   host:port of ClickHouse 18.16's native protocol
#   TRIBUTARY_TEST_CLICKHOUSE_HTTP   host:port of ClickHouse 18.16's HTTP interface
#   TRIBUTARY_TEST_CLICKHOUSE_PID    its process id (for benchmarks that read its CPU)
#   TRIBUTARY_TEST_CLICKHOUSE_MODERN_ADDR  host:port of the modern server's native protocol
#   TRIBUTARY_TEST_CLICKHOUSE_MODERN_HTTP  host:port of the modern server's HTTP interface
#   TRIBUTARY_TEST_CLICKHOUSE_MODERN_PID   its process id
#   TRIBUTARY_TEST_ZOOKEEPER_ADDR    host:port of the private ZooKeeper
#   TRIBUTARY_TEST_CLUSTER_1X2       the cluster's nodes, comma separated, each
#   TRIBUTARY_TEST_CLUSTER_2X1       host:port=folder (native address, the node's folder)
#   TRIBUTARY_TEST_PG_DSN            a superuser DSN of the PostgreSQL cluster
#   TRIBUTARY_TEST_PG_BIN            the folder of PostgreSQL's server binaries
#   TRIBUTARY_TEST_PG_DATA           the cluster's data folder (for restart tests)
#   TRIBUTARY_TEST_PG_USER           the OS user that owns the cluster
#
# Overrides: TRIBUTARY_PG_BIN (folder holding initdb and pg_ctl),
#            TRIBUTARY_CLICKHOUSE_SERVER (path of clickhouse-server),
#            TRIBUTARY_CACHE_DIR (where the modern server's library is kept
#            between runs; default ${XDG_CACHE_HOME:-~/.cache}/tributary).
set -euo pipefail

want_ch=1
want_modern=1
want_cluster=1
want_pg=1
while [ $# -gt 0 ]; do
	case "$1" in
	--no-clickhouse) want_ch=0 ;;
	--no-modern) want_modern=0 ;;
	--no-cluster) want_cluster=0 ;;
	--no-postgres) want_pg=0 ;;
	--) shift; break ;;
	*) break ;;
	esac
	shift
done
if [ $# -eq 0 ]; then
	echo "usage: $0 [--no-clickhouse] [--no-modern] [--no-cluster] [--no-postgres] -- COMMAND [ARG...]" >&2
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

script_dir=$(cd "$(dirname "$0")" && pwd)
root_dir=$(mktemp -d "${TMPDIR:-/tmp}/tributary-testbed.XXXXXX")
chmod 755 "$root_dir"
ch_pid=""
modern_pid=""
zk_pid=""
node_dirs=()
node_sups=()
pg_started=0
pg_user=""
pg_bin=""
# stop_pid asks a server to stop (SIGTERM) and kills it after 5 s.
stop_pid() {
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_command
	if [ "${TRIBUTARY_TESTBED_KEEP:-0}" = 1 ] && [ "$rc" = 0 ]; then
		keep_servers
		exit 0
	fi
	stop_pid "$ch_pid"
	stop_pid "$modern_pid"
	stop_nodes
	stop_pid "$zk_pid"
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
# clickhouse_server prints the path of clickhouse-server, installing Debian's
# package when it is missing.
clickhouse_server() {
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
	echo "$server"
}

start_clickhouse() {
	local server
	server=$(clickhouse_server)
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
			export TRIBUTARY_TEST_CLICKHOUSE_PID="$ch_pid"
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

# ---------------------------------------------------------- modern ClickHouse
# The npm package @chdb/lib-linux-x64-gnu ships libchdb.so, the ClickHouse
# engine as a library. Its clickhouse-local serves the native and HTTP
# protocols for as long as a query runs; scripts/chdb-server/chdb-server.c
# keeps one running until it is told to stop, and relays the native port
# through a forwarder that turns a client's reset into an orderly close
# (clickhouse-local aborts on a reset connection; the tests kill clients).
chdb_package=@chdb/lib-linux-x64-gnu
chdb_version=26.7.3-stable.1 # pinned: the package's latest tag is older
# The tarball's sha512, as the registry published it for this version.
chdb_integrity=sha512-XP97mMqnc5tZpKQywR8N7cLTsHNiTmHr30pC5mzo3jWmukjKn2IBa60c2B/gWUNcuFjOMjWoorQICCqBVj5wpw==

# fetch_chdb prints the path of libchdb.so in the cache folder, downloading
# and checking the package first when the cache does not have it yet.
fetch_chdb() {
	local cache="${TRIBUTARY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tributary}/chdb-$chdb_version"
	local lib="$cache/libchdb.so"
	mkdir -p "$cache" || die "cannot create the cache folder $cache"
	# One download at a time, even with several test beds starting at once.
	exec 9>"$cache/.lock"
	flock 9
	if [ ! -f "$cache/.complete" ]; then
		command -v npm >/dev/null 2>&1 || die "npm is missing: it fetches the modern ClickHouse ($chdb_package@$chdb_version); install Node.js and npm, or pass --no-modern"
		local tmp published actual tgz began=$SECONDS
		tmp=$(mktemp -d "$cache/download.XXXXXX")
		log "downloading $chdb_package@$chdb_version (about 170 MB, once) into $cache"
		published=$(npm view "$chdb_package@$chdb_version" dist.integrity 2>"$tmp/npm.log") ||
			{ cat "$tmp/npm.log" >&2; rm -rf "$tmp"; die "npm view $chdb_package@$chdb_version failed"; }
		if [ "$published" != "$chdb_integrity" ]; then
			rm -rf "$tmp"
			die "the registry publishes $published for $chdb_package@$chdb_version, not the pinned $chdb_integrity: refusing it"
		fi
		(cd "$tmp" && npm pack --silent --cache "$tmp/npm-cache" "$chdb_package@$chdb_version" >"$tmp/pack.out" 2>"$tmp/npm.log") ||
			{ cat "$tmp/npm.log" >&2; rm -rf "$tmp"; die "npm pack $chdb_package@$chdb_version failed"; }
		tgz="$tmp/$(tail -n 1 "$tmp/pack.out")"
		actual="sha512-$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write(c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$tgz")"
		if [ "$actual" != "$published" ]; then
			rm -rf "$tmp"
			die "the downloaded $chdb_package@$chdb_version has $actual, not the published $published"
		fi
		tar -xzf "$tgz" -C "$tmp" package/libchdb.so || { rm -rf "$tmp"; die "cannot extract libchdb.so from $tgz"; }
		mv "$tmp/package/libchdb.so" "$lib"
		echo "$actual" >"$cache/.complete"
		rm -rf "$tmp"
		log "downloaded, checked and extracted in $((SECONDS - began)) s"
	fi
	flock -u 9
	exec 9>&-
	echo "$lib"
}

start_modern() {
	local lib dir="$root_dir/clickhouse-modern" attempt tcp internal http began
	lib=$(fetch_chdb)
	began=$SECONDS
	command -v cc >/dev/null 2>&1 || die "a C compiler (cc) is missing: it builds the modern ClickHouse's launcher; install gcc, or pass --no-modern"
	mkdir -p "$dir"
	cc -O2 -o "$dir/chdb-server" "$script_dir/chdb-server/chdb-server.c" -ldl -lpthread ||
		die "cannot build scripts/chdb-server/chdb-server.c"
	for attempt in 1 2 3 4 5; do
		rm -rf "$dir/data" "$dir/log"
		mkdir -p "$dir/data" "$dir/log"
		tcp=$(free_port) || die "no free port for the modern ClickHouse"
		internal=$(free_port) || die "no free port for the modern ClickHouse"
		http=$(free_port) || die "no free port for the modern ClickHouse"
		[ "$tcp" = "$http" ] || [ "$tcp" = "$internal" ] || [ "$internal" = "$http" ] && continue
		cat >"$dir/config.xml" <<EOF
<clickhouse>
    <logger>
        <level>warning</level>
        <log>$dir/log/server.log</log>
        <errorlog>$dir/log/error.log</errorlog>
        <console>0</console>
    </logger>
    <tcp_port>$internal</tcp_port>
    <http_port>$http</http_port>
    <listen_host>127.0.0.1</listen_host>
    <path>$dir/data/</path>
    <timezone>UTC</timezone>
    <users_config>$dir/users.xml</users_config>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </query_log>
</clickhouse>
EOF
		# Users: default (password-less, the server's own defaults), tributary
		# (a password, for authentication tests), async (inserts asynchronous
		# and not awaited, flushed only after 10 s: the profile a checkpoint
		# must not trust; clickhouse-local has no asynchronous insert queue
		# and stores them at once, so tests read the settings an INSERT ran
		# with from system.query_log) and compat (compatibility=23.8).
		cat >"$dir/users.xml" <<'EOF'
<clickhouse>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
        </default>
        <async>
            <max_memory_usage>4000000000</max_memory_usage>
            <async_insert>1</async_insert>
            <wait_for_async_insert>0</wait_for_async_insert>
            <async_insert_use_adaptive_busy_timeout>0</async_insert_use_adaptive_busy_timeout>
            <async_insert_busy_timeout_ms>10000</async_insert_busy_timeout_ms>
        </async>
        <compat>
            <max_memory_usage>4000000000</max_memory_usage>
            <compatibility>23.8</compatibility>
        </compat>
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
        <async>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>async</profile>
            <quota>default</quota>
        </async>
        <compat>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>compat</profile>
            <quota>default</quota>
        </compat>
    </users>
    <quotas><default/></quotas>
</clickhouse>
EOF
		"$dir/chdb-server" --forward "$tcp:$internal" "$lib" --config-file="$dir/config.xml" \
			--structure "l String" --input-format LineAsString \
			--query "SYSTEM START LISTEN QUERIES ALL; SELECT count() FROM table FORMAT Null" \
			</dev/null >"$dir/log/stdout.log" 2>&1 &
		modern_pid=$!
		if wait_port 127.0.0.1 "$internal" 60 "$modern_pid" && wait_port 127.0.0.1 "$tcp" 5 "$modern_pid"; then
			export TRIBUTARY_TEST_CLICKHOUSE_MODERN_ADDR="127.0.0.1:$tcp"
			export TRIBUTARY_TEST_CLICKHOUSE_MODERN_HTTP="127.0.0.1:$http"
			export TRIBUTARY_TEST_CLICKHOUSE_MODERN_PID="$modern_pid"
			log "modern ClickHouse $chdb_version on 127.0.0.1:$tcp (pid $modern_pid), up in $((SECONDS - began)) s"
			return 0
		fi
		stop_pid "$modern_pid"
		modern_pid=""
		log "the modern ClickHouse did not start on port $tcp (attempt $attempt); log tail:"
		tail -n 5 "$dir/log/error.log" "$dir/log/stdout.log" >&2 2>/dev/null || true
	done
	die "the modern ClickHouse failed to start"
}

# ------------------------------------------------------- ClickHouse clusters
start_zookeeper() {
	local jar=/usr/share/java/zookeeper.jar dir="$root_dir/zookeeper" attempt port
	if [ ! -f "$jar" ]; then
		log "ZooKeeper is missing: installing Debian's zookeeper package"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper >&2 ||
			die "could not install zookeeper (needs root or password-less sudo); or pass --no-cluster"
	fi
	command -v java >/dev/null 2>&1 || die "java is missing (ZooKeeper needs it); or pass --no-cluster"
	for attempt in 1 2 3 4 5; do
		rm -rf "$dir"
		mkdir -p "$dir/data"
		port=$(free_port) || die "no free port for ZooKeeper"
		cat >"$dir/zoo.cfg" <<EOF
tickTime=500
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok
forceSync=no
EOF
		java -Xmx256m -cp "$jar" org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" >"$dir/zookeeper.log" 2>&1 &
		zk_pid=$!
		if wait_port 127.0.0.1 "$port" 30 "$zk_pid"; then
			export TRIBUTARY_TEST_ZOOKEEPER_ADDR="127.0.0.1:$port"
			log "ZooKeeper on 127.0.0.1:$port (pid $zk_pid)"
			return 0
		fi
		stop_pid "$zk_pid"
		zk_pid=""
		log "ZooKeeper did not start on port $port (attempt $attempt); log tail:"
		tail -n 5 "$dir/zookeeper.log" >&2 2>/dev/null || true
	done
	die "ZooKeeper failed to start"
}

# supervise DIR SERVER runs the node of DIR until DIR/stop exists, starting
# it again after it dies unless DIR/hold exists; DIR/pid holds its pid.
supervise() {
	local dir=$1 server=$2 pid
	while [ ! -f "$dir/stop" ]; do
		if [ -f "$dir/hold" ]; then
			sleep 0.1
			continue
		fi
		(cd "$dir" && exec "$server" --config-file="$dir/config.xml" >>"$dir/log/stdout.log" 2>&1) &
		pid=$!
		echo "$pid" >"$dir/pid"
		wait "$pid" || true
		sleep 0.2
	done
}

stop_nodes() {
	local i dir pid
	for i in "${!node_dirs[@]}"; do
		dir=${node_dirs[$i]}
		touch "$dir/stop"
		pid=$(cat "$dir/pid" 2>/dev/null || true)
		[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
	done
	for i in "${!node_dirs[@]}"; do
		dir=${node_dirs[$i]}
		pid=$(cat "$dir/pid" 2>/dev/null || true)
		[ -n "$pid" ] && stop_pid "$pid"
		stop_pid "${node_sups[$i]}"
	done
}

# start_cluster starts ZooKeeper and four ClickHouse 18.16 nodes: a and b
# (cluster tributary_1x2, one shard), c and d (tributary_2x1, two shards).
start_cluster() {
	local server names=(a b c d) shards=(r1 r1 s1 s2) n i dir tcp=() http=() inter=() p used=" "
	server=$(clickhouse_server)
	start_zookeeper
	for i in 0 1 2 3; do
		for n in tcp http inter; do
			while :; do
				p=$(free_port) || die "no free port for the cluster"
				case "$used" in *" $p "*) continue ;; esac
				used="$used$p "
				break
			done
			eval "$n[$i]=$p"
		done
	done
	replica() { echo "<replica><host>127.0.0.1</host><port>${tcp[$1]}</port></replica>"; }
	local remote="<remote_servers>
        <tributary_1x2><shard><internal_replication>true</internal_replication>$(replica 0)$(replica 1)</shard></tributary_1x2>
        <tributary_2x1><shard><internal_replication>true</internal_replication>$(replica 2)</shard><shard><internal_replication>true</internal_replication>$(replica 3)</shard></tributary_2x1>
    </remote_servers>"
	for i in 0 1 2 3; do
		dir="$root_dir/cluster/${names[$i]}"
		mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/log" "$dir/format_schemas"
		cp "$root_dir/clickhouse/users.xml" "$dir/users.xml"
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
    <tcp_port>${tcp[$i]}</tcp_port>
    <http_port>${http[$i]}</http_port>
    <interserver_http_port>${inter[$i]}</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <zookeeper>
        <node><host>127.0.0.1</host><port>${TRIBUTARY_TEST_ZOOKEEPER_ADDR##*:}</port></node>
        <session_timeout_ms>6000</session_timeout_ms>
    </zookeeper>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <macros><shard>${shards[$i]}</shard><replica>${names[$i]}</replica></macros>
    $remote
</yandex>
EOF
		supervise "$dir" "$server" &
		node_sups[$i]=$!
		node_dirs[$i]=$dir
	done
	for i in 0 1 2 3; do
		dir=${node_dirs[$i]}
		for _ in $(seq 1 50); do [ -s "$dir/pid" ] && break; sleep 0.1; done
		wait_port 127.0.0.1 "${tcp[$i]}" 60 "$(cat "$dir/pid")" || {
			tail -n 5 "$dir/log/error.log" "$dir/log/stdout.log" >&2 2>/dev/null || true
			die "ClickHouse node ${names[$i]} did not start on port ${tcp[$i]}"
		}
	done
	export TRIBUTARY_TEST_CLUSTER_1X2="127.0.0.1:${tcp[0]}=${node_dirs[0]},127.0.0.1:${tcp[1]}=${node_dirs[1]}"
	export TRIBUTARY_TEST_CLUSTER_2X1="127.0.0.1:${tcp[2]}=${node_dirs[2]},127.0.0.1:${tcp[3]}=${node_dirs[3]}"
	log "ClickHouse clusters: tributary_1x2 on ports ${tcp[0]} ${tcp[1]}, tributary_2x1 on ports ${tcp[2]} ${tcp[3]}"
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
[ "$want_ch" = 1 ] && [ "$want_cluster" = 1 ] && start_cluster
[ "$want_modern" = 1 ] && start_modern
[ "$want_pg" = 1 ] && start_postgres

# ------------------------------------------------------------------ command
# The command runs in the background, in a process group of its own (job
# control on while it starts), and the script waits for it: bash runs a trap
# only once its foreground command has returned, so a command in the
# foreground kept a SIGTERM from stopping anything until it ended by itself.
# A SIGINT or SIGTERM is forwarded once to the command's whole group (its
# children included; a terminal's Ctrl-C reaches this script alone, as the
# command is not in the terminal's foreground group), and the exit it causes
# runs cleanup: stop_command waits for the command to finish (a drain of
# `tributary run` included), then the servers are stopped and the folder
# removed. The command does not read the terminal.
cmd_pid=""
cmd_signal=""
# stop_command ends the command's process group: after a signal it waits up
# to 15 s for the command to exit; on any other exit path it sends SIGTERM
# first. Then whatever is left in the group (the command's children, or the
# command itself after 15 s) gets SIGTERM, and SIGKILL 2 s later.
stop_command() {
	[ -n "${cmd_pid:-}" ] || return 0
	if kill -0 "$cmd_pid" 2>/dev/null && [ -z "$cmd_signal" ]; then
		kill -TERM -- "-$cmd_pid" 2>/dev/null || true
	fi
	local i
	for i in $(seq 1 150); do
		kill -0 "$cmd_pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -TERM -- "-$cmd_pid" 2>/dev/null; then
		for i in $(seq 1 20); do
			kill -0 -- "-$cmd_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-$cmd_pid" 2>/dev/null || true
	fi
	wait "$cmd_pid" 2>/dev/null || true
}
# keep_servers leaves the servers running after a command that succeeded
# (TRIBUTARY_TESTBED_KEEP=1, for `DEMO_KEEP=1 make demo`), writes
# $root_dir/stop.sh, which stops them and removes the folder, and prints it.
keep_servers() {
	{
		echo "#!/usr/bin/env bash"
		echo "# Stops the servers scripts/testbed.sh left running and removes their folder."
		local p
		for p in "${node_dirs[@]}"; do
			echo "touch $p/stop; kill -TERM \$(cat $p/pid) 2>/dev/null"
		done
		for p in $ch_pid $modern_pid ${node_sups[@]+"${node_sups[@]}"} $zk_pid; do
			echo "kill -TERM $p 2>/dev/null; for _ in \$(seq 1 50); do kill -0 $p 2>/dev/null || break; sleep 0.1; done; kill -KILL $p 2>/dev/null"
		done
		if [ "$pg_started" = 1 ]; then
			printf '%q ' ${pg_user:+runuser -u "$pg_user" --} "$pg_bin/pg_ctl" -D "$root_dir/pg/data" -m fast -w stop
			echo ">/dev/null 2>&1"
		fi
		echo "rm -rf $root_dir"
		echo 'echo "testbed: stopped and removed"'
	} >"$root_dir/stop.sh"
	log "TRIBUTARY_TESTBED_KEEP=1: the servers keep running; stop them with: bash $root_dir/stop.sh"
}
forward_signal() { # SIGNAL EXIT-CODE
	trap - INT TERM
	cmd_signal=$1
	kill -s "$1" -- "-$cmd_pid" 2>/dev/null || true
	log "$1: stopping the command (process group $cmd_pid) and the servers"
	exit "$2"
}
export TRIBUTARY_TESTBED_STOP="$root_dir/stop.sh" # written by keep_servers
set -m
"$@" </dev/null &
cmd_pid=$!
set +m
trap 'forward_signal INT 130' INT
trap 'forward_signal TERM 143' TERM
set +e
wait "$cmd_pid"
rc=$?
set -e
exit "$rc"
