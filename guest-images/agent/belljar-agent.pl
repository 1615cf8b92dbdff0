#!/usr/bin/perl
# Belljar guest agent (protocol version 1).
#
# Speaks length-prefixed JSON over its standard input and output, whatever
# stream those are (a vsock connection through socat in the product, a
# virtserialport in tests): each frame is a 4-byte big-endian length followed
# by that many bytes of UTF-8 JSON (one object with "v" and "type").
#
#   guest -> host: ready {protocol, agent, timings}
#                  status {id?, state: idle|loading|loaded|error, url?, title?, error?}
#                  error {id?, message}
#                  bye {id?}
#                  display {id?, width, height}   (the mode sway now shows)
#   host -> guest: open {id, item: {disk: "vdb"}} | open {id, url: "https://..."}
#                  status {id}   (asks for a status message)
#                  display {id, width, height}   (the host's window changed size)
#                  shutdown {id}
#
# It never executes what it receives: an item is copied from its read-only
# disk into a tmpfs file and handed to Chromium (already running under cage,
# as the unprivileged viewer user) through Chromium's DevTools HTTP endpoint
# on the guest's loopback. Written for Debian's perl-base (Essential, already
# in every rootfs, starts in milliseconds): core modules only.
use strict;
use warnings;
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Scalar::Util qw(blessed);

my $PROTOCOL  = 1;
my $MAX_FRAME = 1 << 20;
my %opt       = (
    devtools  => '127.0.0.1:9222',
    items     => '/run/belljar/items',
    timings   => '/run/belljar/timings',
    busybox   => '/run/belljar/busybox',
    max_item  => 128 * 1024 * 1024,
    open_disk => '',
    dev_dir   => '/dev',
    # sway's IPC socket: $XDG_RUNTIME_DIR/sway-ipc.<uid>.<pid>.sock of the viewer user.
    sway_socket => '/run/user/1000/sway-ipc.*.sock',
);
while (@ARGV) {
    my $k = shift @ARGV;
    $k =~ s/^--// or die "agent: bad argument $k\n";
    $k =~ tr/-/_/;
    exists $opt{$k} or die "agent: unknown option --$k\n";
    $opt{$k} = shift @ARGV;
}

sub logmsg { print STDERR "belljar-agent: @_\n" }

my $devtools_up;    # guest uptime when Chromium's DevTools first answered

# ---------------------------------------------------------------- JSON
# Numbers are blessed JNum refs and booleans JBool refs, so strings that look
# like numbers stay strings. Strings are UTF-8 byte strings throughout.
sub num  { my $n = shift; return bless \$n, 'JNum' }
sub bool { my $b = shift; my $v = $b ? 1 : 0; return bless \$v, 'JBool' }

sub json_str {
    my $s = shift;
    $s =~ s/([\\"])/\\$1/g;
    $s =~ s/([\x00-\x1f\x7f])/sprintf('\\u%04x', ord $1)/ge;
    return "\"$s\"";
}

sub json_enc {
    my $v = shift;
    return 'null' unless defined $v;
    if (my $class = blessed $v) {
        return $$v + 0 if $class eq 'JNum';
        return $$v ? 'true' : 'false' if $class eq 'JBool';
        die "json: cannot encode $class\n";
    }
    my $r = ref $v;
    return '{' . join(',', map { json_str($_) . ':' . json_enc($v->{$_}) } sort keys %$v) . '}' if $r eq 'HASH';
    return '[' . join(',', map { json_enc($_) } @$v) . ']' if $r eq 'ARRAY';
    die "json: cannot encode $r\n" if $r;
    return json_str($v);
}

sub json_dec {
    local $_ = shift;
    my $v = _jv(0);
    /\G[ \t\r\n]*/gc;
    die "json: trailing data\n" unless (pos() // 0) == length;
    return $v;
}

sub _ws { /\G[ \t\r\n]*/gc }

sub _jv {
    my $depth = shift;
    die "json: too deep\n" if $depth > 64;
    _ws();
    if (/\G\{/gc) {
        my %h;
        _ws();
        return \%h if /\G\}/gc;
        while (1) {
            _ws();
            my $k = _jstr() // die "json: expected a key\n";
            _ws();
            /\G:/gc or die "json: expected ':'\n";
            $h{$k} = _jv($depth + 1);
            _ws();
            next if /\G,/gc;
            last if /\G\}/gc;
            die "json: expected ',' or '}'\n";
        }
        return \%h;
    }
    if (/\G\[/gc) {
        my @a;
        _ws();
        return \@a if /\G\]/gc;
        while (1) {
            push @a, _jv($depth + 1);
            _ws();
            next if /\G,/gc;
            last if /\G\]/gc;
            die "json: expected ',' or ']'\n";
        }
        return \@a;
    }
    my $s = _jstr();
    return $s if defined $s;
    return num($1)   if /\G(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)/gc;
    return bool(1)   if /\Gtrue/gc;
    return bool(0)   if /\Gfalse/gc;
    return undef     if /\Gnull/gc;
    die "json: unexpected input\n";
}

sub _cp {
    my $c = chr shift;
    utf8::encode($c);
    return $c;
}

sub _unescape {
    my $e = shift;
    my %simple = ('"' => '"', '\\' => '\\', '/' => '/', b => "\b", f => "\f", n => "\n", r => "\r", t => "\t");
    return $simple{$e} if exists $simple{$e};
    my ($hi, $lo) = $e =~ /^u([0-9a-fA-F]{4})(?:\\u([0-9a-fA-F]{4}))?$/ or die "json: bad escape\n";
    ($hi, $lo) = (hex $hi, defined $lo ? hex $lo : undef);
    if (defined $lo && $hi >= 0xD800 && $hi <= 0xDBFF && $lo >= 0xDC00 && $lo <= 0xDFFF) {
        return _cp(0x10000 + (($hi - 0xD800) << 10) + ($lo - 0xDC00));
    }
    my $out = ($hi >= 0xD800 && $hi <= 0xDFFF) ? _cp(0xFFFD) : _cp($hi);
    $out .= ($lo >= 0xD800 && $lo <= 0xDFFF) ? _cp(0xFFFD) : _cp($lo) if defined $lo;
    return $out;
}

sub _jstr {
    /\G"((?:[^"\\\x00-\x1f]++|\\.)*+)"/gcs or return undef;
    my $raw = $1;
    $raw =~ s/\\(u[0-9a-fA-F]{4}(?:\\u[0-9a-fA-F]{4})?|.)/_unescape($1)/gse;
    return $raw;
}

# ---------------------------------------------------------------- framing
my $in_buf = '';

sub send_msg {
    my ($type, %fields) = @_;
    my $json = json_enc({ v => num($PROTOCOL), type => $type, %fields });
    my $frame = pack('N', length $json) . $json;
    while (length $frame) {
        my $n = syswrite(STDOUT, $frame);
        die "agent: write failed: $!\n" unless defined $n;
        substr($frame, 0, $n) = '';
    }
}

# Returns the decoded messages now complete in the input buffer.
sub take_frames {
    my @msgs;
    while (length $in_buf >= 4) {
        my $len = unpack('N', $in_buf);
        die "agent: frame of $len bytes refused (limit $MAX_FRAME)\n" if $len == 0 || $len > $MAX_FRAME;
        last if length $in_buf < 4 + $len;
        my $json = substr($in_buf, 4, $len);
        substr($in_buf, 0, 4 + $len) = '';
        my $msg = eval { json_dec($json) };
        if (!$msg || ref $msg ne 'HASH') {
            send_msg('error', message => 'malformed message: ' . ($@ || 'not an object'));
            next;
        }
        push @msgs, $msg;
    }
    return @msgs;
}

# ---------------------------------------------------------------- DevTools
# A minimal HTTP/1.1 client for Chromium's DevTools endpoint (loopback only).
sub devtools {
    my ($method, $path) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => $opt{devtools}, Proto => 'tcp', Timeout => 2) or return undef;
    my ($host) = $opt{devtools};
    print $sock "$method $path HTTP/1.1\r\nHost: $host\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    my $sel = IO::Select->new($sock);
    my $resp = '';
    # Generous: under software emulation Chromium takes seconds to make a tab.
    my $deadline = time + 30;
    while (1) {
        my $left = $deadline - time;
        last if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($sock, $resp, 65536, length $resp);
        last unless $n;
        if ($resp =~ /\r\n\r\n/ && $resp =~ /^Content-Length:\s*(\d+)/mi) {
            my $need = $1;
            my $head = index($resp, "\r\n\r\n") + 4;
            last if length($resp) - $head >= $need;
        }
    }
    close $sock;
    my ($code, $body) = $resp =~ m{^HTTP/1\.[01] (\d+)[^\n]*\n.*?\r\n\r\n(.*)\z}s or return undef;
    return undef unless $code == 200;
    return eval { json_dec($body) };
}

sub pct {
    my $s = shift;
    $s =~ s/([^A-Za-z0-9\-._~\/])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

sub pct_all {
    my $s = shift;
    $s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

sub pages {
    my $list = devtools('GET', '/json/list');
    return undef unless ref $list eq 'ARRAY';
    $devtools_up //= uptime();
    return [grep { ref $_ eq 'HASH' && ($_->{type} // '') eq 'page' } @$list];
}

sub uptime {
    open(my $fh, '<', '/proc/uptime') or return 0;
    my ($s) = split ' ', scalar <$fh>;
    return $s + 0;
}

# ---------------------------------------------------------------- items
my $open_count = 0;

sub copy_item {
    my $dev = shift;
    die "item disk name refused\n" unless $dev =~ /^vd[b-z]$/;
    my $path = "$opt{dev_dir}/$dev";
    # The disk may have been swapped under a restored snapshot: drop cached blocks.
    system($opt{busybox}, 'blockdev', '--flushbufs', $path) if -b $path;
    open(my $in, '<:raw', $path) or die "cannot open $path: $!\n";
    my $head = '';
    sysread($in, $head, 4096) == 4096 or die "item disk $path is too short\n";
    $head =~ s/\0.*\z//s;
    my @lines = split /\n/, $head;
    (shift(@lines) // '') eq 'BELLJAR-ITEM 1' or die "item disk $path has no item header\n";
    my %h;
    for (@lines) { /^([a-z0-9]+)=(.*)$/ or die "bad item header line\n"; $h{$1} = $2 }
    my ($size, $name, $viewer) = @h{qw(size name viewer)};
    die "item header lacks size/name/viewer\n" unless defined $size && defined $name && defined $viewer;
    die "item size refused\n" unless $size =~ /^[0-9]{1,12}$/ && $size > 0 && $size <= $opt{max_item};
    die "item name refused\n" if $name !~ /^[^\/\x00-\x1f\x7f]{1,400}$/ || $name =~ /^[.\-]/;
    die "item viewer refused\n" unless $viewer =~ /^(pdf|image|text|html)$/;
    $open_count++;
    my $dir = "$opt{items}/$open_count";
    mkdir $opt{items}, 0755;
    mkdir $dir, 0755 or die "cannot create $dir: $!\n";
    my $dest = "$dir/$name";
    open(my $out, '>:raw', $dest) or die "cannot create item file: $!\n";
    my $left = $size;
    while ($left > 0) {
        my $want = $left < 1048576 ? $left : 1048576;
        my $n = sysread($in, my $buf, $want);
        die "item disk ended early\n" unless $n;
        print $out $buf or die "write failed: $!\n";
        $left -= $n;
    }
    close $out or die "write failed: $!\n";
    close $in;
    chmod 0444, $dest;
    return ('file://' . pct($dest), $viewer, $name);
}

# ---------------------------------------------------------------- display
# The display sizes the agent sets (the VMM clamps the same way) and how long
# sway gets to answer.
my ($DISPLAY_MIN_SIDE, $DISPLAY_MAX_SIDE) = (64, 3840);
my $SWAY_TIMEOUT_S = 5;
my $SWAY_MAX_REPLY = 65536;
# i3/sway IPC: "i3-ipc", payload length and message type (little-endian u32s).
my $SWAY_RUN_COMMAND = 0;

# Runs one sway command; returns undef on success, else why it failed.
sub sway_command {
    my $command = shift;
    my ($path) = grep { -S $_ } glob $opt{sway_socket};
    return 'sway is not running (no IPC socket)' unless defined $path;
    my $sock = IO::Socket::UNIX->new(Peer => $path, Type => SOCK_STREAM) or return "cannot reach sway: $!";
    my $req = 'i3-ipc' . pack('VV', length $command, $SWAY_RUN_COMMAND) . $command;
    defined syswrite($sock, $req) or return "cannot talk to sway: $!";
    my $sel = IO::Select->new($sock);
    my $deadline = time + $SWAY_TIMEOUT_S;
    my ($resp, $len) = ('', undef);
    while (1) {
        if (!defined $len && length $resp >= 14) {
            $len = unpack('V', substr($resp, 6, 4));
            return 'sway sent an oversized reply' if $len > $SWAY_MAX_REPLY;
        }
        last if defined $len && length $resp >= 14 + $len;
        my $left = $deadline - time;
        return "sway did not answer within $SWAY_TIMEOUT_S s" if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($sock, $resp, 65536, length $resp);
        return 'sway closed its IPC connection' unless $n;
    }
    close $sock;
    my $replies = eval { json_dec(substr($resp, 14, $len)) };
    return 'sway sent a malformed reply' unless ref $replies eq 'ARRAY' && ref $replies->[0] eq 'HASH';
    my $ok = $replies->[0]{success};
    return undef if blessed $ok && $$ok;
    return 'sway refused: ' . ($replies->[0]{error} // 'no reason given');
}

sub set_display {
    my $msg = shift;
    my %idf = defined $msg->{id} ? (id => $msg->{id}) : ();
    my ($w, $h) = map { blessed($_) && ref $_ eq 'JNum' ? $$_ : '' } @$msg{qw(width height)};
    for ($w, $h) {
        next if /^[0-9]{1,5}$/ && $_ >= $DISPLAY_MIN_SIDE && $_ <= $DISPLAY_MAX_SIDE;
        send_msg('error', %idf, message => "display size must be whole numbers from $DISPLAY_MIN_SIDE to $DISPLAY_MAX_SIDE");
        return;
    }
    # A custom mode: sway 1.7 (wlroots 0.15) does not re-read the connector's mode
    # list when the display changes, and virtio-gpu takes any mode in its limits.
    my $err = sway_command("output * mode --custom ${w}x${h}");
    if (defined $err) {
        send_msg('error', %idf, message => "display ${w}x${h}: $err");
        return;
    }
    send_msg('display', %idf, width => num($w + 0), height => num($h + 0));
}

# ---------------------------------------------------------------- state
my %nav;    # the navigation in progress: id, url, target, since, state, title

sub status_msg {
    my %extra = @_;
    my %m = (state => $nav{state} // 'idle', uptime_ms => num(int(uptime() * 1000)));
    $m{devtools_ms} = num(int($devtools_up * 1000)) if defined $devtools_up;
    $m{url}   = $nav{url}   if defined $nav{url};
    $m{title} = $nav{title} if defined $nav{title};
    $m{error} = $nav{error} if defined $nav{error};
    send_msg('status', %m, %extra);
}

sub start_open {
    my $msg = shift;
    my $id  = $msg->{id};
    my %idf = defined $id ? (id => $id) : ();
    my $url;
    if (ref $msg->{item} eq 'HASH' && defined $msg->{item}{disk}) {
        my ($u, $viewer) = eval { copy_item($msg->{item}{disk}) };
        if (!$u) {
            my $err = $@ || 'item copy failed';
            chomp $err;
            %nav = (state => 'error', error => $err);
            status_msg(%idf);
            return;
        }
        $url = $u;
    } elsif (defined $msg->{url} && !ref $msg->{url}) {
        $url = $msg->{url};
        if ($url !~ m{^https?://[^\s/?#]+[^\s]*$} || length $url > 8192) {
            %nav = (state => 'error', error => 'only http and https URLs open');
            status_msg(%idf);
            return;
        }
    } else {
        send_msg('error', %idf, message => 'open needs item.disk or url');
        return;
    }
    %nav = (id => $id, url => $url, state => 'loading', since => uptime(), pending_new => 1);
    status_msg(%idf);
    poll();
}

# Advances the navigation: create the tab once DevTools answers, close the
# others, then watch the title until the page reports one.
sub poll {
    return unless ($nav{state} // '') eq 'loading';
    my %idf = defined $nav{id} ? (id => $nav{id}) : ();
    if ($nav{pending_new}) {
        my $before = pages() or return;    # Chromium not up yet: try again later
        my $target = devtools('PUT', '/json/new?' . pct_all($nav{url}));
        if (ref $target ne 'HASH' || !defined $target->{id}) {
            %nav = (%nav, state => 'error', error => 'Chromium refused to open the page');
            delete $nav{pending_new};
            status_msg(%idf);
            return;
        }
        $nav{target} = $target->{id};
        delete $nav{pending_new};
        devtools('GET', '/json/activate/' . $nav{target});
        for my $p (@$before) {
            next unless defined $p->{id} && $p->{id} ne $nav{target};
            next unless ($p->{url} // '') =~ m{^(about:blank|file:|https?:)};    # leave Chromium's own UI pages
            devtools('GET', '/json/close/' . $p->{id});
        }
        $nav{opened_at} = uptime();
        return;
    }
    my $list = pages() or return;
    my ($page) = grep { ($_->{id} // '') eq $nav{target} } @$list;
    if (!$page) {
        %nav = (%nav, state => 'error', error => 'the page closed');
        status_msg(%idf);
        return;
    }
    my $title = $page->{title} // '';
    if ($title ne '' && $title ne $nav{url} && $title !~ m{^(about:blank|file://|chrome-extension://)}) {
        $nav{state} = 'loaded';
        $nav{title} = $title;
        $nav{url}   = $page->{url} if defined $page->{url} && $page->{url} =~ m{^(file|https?)://};
        status_msg(%idf, elapsed_ms => num(int((uptime() - $nav{since}) * 1000)));
    }
}

sub timings {
    my %t;
    if (open(my $fh, '<', $opt{timings})) {
        while (<$fh>) { $t{$1} = num(int($2 * 1000)) if /^([a-z_]+) ([0-9.]+)$/ }
    }
    $t{agent_ready} = num(int(uptime() * 1000));
    return \%t;
}

sub handle {
    my $msg  = shift;
    my $type = $msg->{type} // '';
    my %idf  = defined $msg->{id} ? (id => $msg->{id}) : ();
    my $v    = blessed($msg->{v}) ? ${ $msg->{v} } : -1;
    if ($v != $PROTOCOL) {
        send_msg('error', %idf, message => "unsupported protocol version (this agent speaks $PROTOCOL)");
        return;
    }
    if    ($type eq 'open')    { start_open($msg) }
    elsif ($type eq 'status')  { status_msg(%idf) }
    elsif ($type eq 'display') { set_display($msg) }
    elsif ($type eq 'shutdown') {
        send_msg('bye', %idf);
        system('sync');
        if (open(my $fh, '>', '/proc/sysrq-trigger')) { print $fh 'o'; close $fh }
        exit 0;
    } else {
        send_msg('error', %idf, message => "unknown message type");
    }
}

# ---------------------------------------------------------------- main
$| = 1;
binmode STDIN;
binmode STDOUT;
send_msg('ready', protocol => num($PROTOCOL), agent => 'belljar-agent.pl', timings => timings());
start_open({ item => { disk => $opt{open_disk} } }) if $opt{open_disk};
my $sel = IO::Select->new(\*STDIN);
while (1) {
    if (!$sel->count) {
        select(undef, undef, undef, 0.25);
    } elsif ($sel->can_read(0.25)) {
        my $n = sysread(STDIN, $in_buf, 65536, length $in_buf);
        if (!defined $n) { next if $!{EINTR} || $!{EAGAIN}; die "agent: read failed: $!\n" }
        if ($n == 0) {
            # Without a host on the stream an item named at boot still opens.
            exit 0 unless $opt{open_disk};
            $sel->remove(\*STDIN);
        }
        handle($_) for take_frames();
    }
    poll();
}
