"""Versions, environment controls, fault names and help texts of the cloudflared stand-in."""

from __future__ import annotations

VERSION = "2026.8.2"
BUILD_TIME = "2026-11-25-22:44 UTC"
VERSION_LINE = f"cloudflared version {VERSION} (built {BUILD_TIME})"
CHECKSUM = "b856a4c3d21f0e9b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a"
GO_VERSION = "go1.27.3"
EDGE_IP = "198.41.200.13"
UNREACHABLE_EDGE_IP = "198.41.192.7"
EDGE_LOCATION = "fra08"
DEFAULT_QUICK_SERVICE = "https://api.trycloudflare.com"
DEFAULT_NAMED_HOSTNAME = "tunnel.example.com"
RESOLVER = "10.255.255.53:53"
FAULT_ENV = "FAKE_CLOUDFLARED_FAULT"
STATE_DIR_ENV = "FAKE_CLOUDFLARED_STATE_DIR"
ORIGIN_ENV = "FAKE_CLOUDFLARED_ORIGIN"
HOSTNAME_ENV = "FAKE_CLOUDFLARED_HOSTNAME"
EDGE_PORT_ENV = "FAKE_CLOUDFLARED_EDGE_PORT"
# A directory with the edge's certificate (edge.pem, edge-key.pem; testkit/edge_tls.py): the edge
# also serves TLS, as Cloudflare's does. Not FAKE_CLOUDFLARED_*: set once for a whole session,
# it must pass the harnesses that drop the per-test stand-in settings.
EDGE_TLS_ENV = "TESTKIT_EDGE_TLS_DIR"

FAULT_NAMES = frozenset(
    {
        "crash_after",  # =SECONDS since process start: ERR line, then exit crash_code
        "crash_code",  # =N exit code for crash_after (default 1)
        "crash_signal",  # =KILL|SEGV|... die by this signal instead of exiting
        "no_url",  # quick tunnel: "Requesting new quick Tunnel..." then hang forever
        "dns_failure",  # quick: API lookup fails (exit 1); named: edge SRV lookup fails (exit 1)
        "rate_limited",  # quick: HTTP 429 / error code 1015 (exit 1)
        "request_timeout",  # [=SECONDS, default 15] quick-tunnel service hangs, then exit 1
        "ignore_sigterm",  # SIGTERM and SIGINT are ignored
        "log_flood",  # =LINES_PER_SECOND WRN/INF lines after the metrics server started
        "flood_line_bytes",  # =N bytes per flood line without the newline (default 120)
        "flood_invalid_utf8",  # put invalid UTF-8 bytes into the flood lines
        "never_ready",  # [=SECONDS between dial attempts, default 1] edge never reachable
        "stall_after",  # =SECONDS after registration: connection lost, /ready 503
        "close_stdio",  # close fds 1 and 2 after the Registered line, keep running
        "register_delay",  # =SECONDS between metrics start and registration (default 0.05)
        "request_delay",  # =SECONDS of the quick-tunnel request (default 0.05)
        "exit_clean_after",  # =SECONDS since process start: graceful lines, exit 0
    }
)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
WS_HANDSHAKE_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)

_WORDS_TEXT = (
    "able acid aged also area army away baby back ball band bank base bath bear beat been "
    "beer bell belt best bill bird blow blue boat body bold bone book boom born boss both "
    "bowl bulk burn bush busy cafe cake call calm came camp card care cars case cash cast "
    "cell chat chip city club coal coat code cold come cook cool cope copy core cost crew "
    "crop dark data date dawn days dead deal dear debt deep deny desk dial diet disc disk "
    "does done door dose down draw drew drop drug dual duke dust duty each earn ease east "
    "easy edge else even ever evil exit face fact fail fair fall farm fast fate fear feed "
    "feel fell file fill film find fine fire firm fish five flat flow food foot ford form "
    "fort four free from fuel full fund gain game gate gave gear gene gift girl give glad "
    "goal goes gold golf gone good gray grew grey grow gulf hair half hall hand hang hard "
    "harm hate have head hear heat held hell help here hero high hill hire hold hole holy "
    "home hope host hour huge hung hunt hurt idea inch into iron item jack jane jean john "
    "join jump jury just keen keep kent kept kick kind king knee knew know lack lady laid "
    "lake land lane last late lead left less life lift like line link list live load loan "
    "lock logo long look lord lose loss lost love luck made mail main make male many mark "
    "mass matt meal mean meat meet menu mere mike mile milk mill mind mine miss mode mood "
    "moon more most move much must name navy near neck need news next nice nick nine none "
    "nose note okay once only open oral over pace pack page paid pain pair palm park part "
    "pass past path peak pick pink pipe plan play plot plug plus poll pool poor port post "
    "pull pure push race rail rain rank rare rate read real rear rely rent rest rice rich "
    "ride ring rise risk road rock role roll roof room root rose rule rush safe said sake "
    "sale salt same sand save seat seed seek seem seen self sell send sent sept ship shop "
    "shot show shut sick side sign site size skin slip slow snow soft soil sold sole some "
    "song soon sort soul spot star stay step stop such suit sure take tale talk tall tank "
    "tape task team tech tell tend term test text than that them then they thin this thus "
    "till time tiny told toll tone tony took tool tour town tree trip true tune turn twin "
    "type unit upon used user vary vast very vice view vote wage wait wake walk wall want "
    "ward warm wash wave ways weak wear week well went were west what when whom wide wife "
    "wild will wind wine wing wire wise wish with wood word wore work yard yeah year your "
    "zero zone "
)
WORDS = tuple(_WORDS_TEXT.split())

ROOT_HELP = """NAME:
   cloudflared - Cloudflare's command-line tool and agent

USAGE:
   cloudflared [global options] [command] [command options]

VERSION:
   2026.8.2 (built 2026-11-25-22:44 UTC)

DESCRIPTION:
   cloudflared connects your machine or user identity to Cloudflare's global network.
     You can use it to authenticate a session to reach an API behind Access, route web traffic to
     this machine, and configure access control.

     See https://developers.cloudflare.com/cloudflare-one/connections/connect-apps for more in-depth
     documentation.

COMMANDS:
   update     Update the agent if a new version exists
   version    Print the version
   tunnel     Use Cloudflare Tunnel to expose private services to the Internet or to Cloudflare
              connected private users.
   help, h    Shows a list of commands or help for one command

GLOBAL OPTIONS:
   --url URL                      Connect to the local webserver at URL. (default:
                                  "http://localhost:8080") [$TUNNEL_URL]
   --metrics value                Listen address for metrics reporting. [$TUNNEL_METRICS]
   --loglevel value               Application logging level {debug, info, warn, error, fatal}.
                                  (default: "info") [$TUNNEL_LOGLEVEL]
   --no-autoupdate                Disable periodic check for updates, restarting the server with
                                  the new version. (default: false) [$NO_AUTOUPDATE]
   --help, -h                     show help
   --version, -v, -V              Print the version
"""

TUNNEL_HELP = """NAME:
   cloudflared tunnel - Use Cloudflare Tunnel to expose private services to the Internet or to
   Cloudflare connected private users.

USAGE:
   cloudflared tunnel [tunnel command options] [subcommand options]

DESCRIPTION:
   Cloudflare Tunnel allows to expose private services without opening any ingress port on this
   machine. It can expose:
     A) Locally reachable HTTP-based private services to the Internet on DNS with Cloudflare as
        authority (which you can then protect with Cloudflare Access).
     B) Locally reachable TCP/UDP-based private services to Cloudflare connected private users
        in the same account, e.g., those enrolled to a Zero Trust WARP Client.

   To start a quick tunnel for testing:
     cloudflared tunnel --url http://localhost:8080

COMMANDS:
   run      Proxy a local web server by running the given tunnel
   help, h  Shows a list of commands or help for one command

OPTIONS:
   --metrics value          Listen address for metrics reporting. [$TUNNEL_METRICS]
   --grace-period value     When cloudflared receives SIGINT/SIGTERM it will stop accepting new
                            requests, wait for in-progress requests to terminate, then shutdown.
                            Waiting for in-progress requests will timeout after this grace
                            period, or when a second SIGTERM/SIGINT is received. (default: 30s)
                            [$TUNNEL_GRACE_PERIOD]
   --edge-ip-version value  Cloudflare Edge IP address version to connect with. {4, 6, auto}
                            (default: "4") [$TUNNEL_EDGE_IP_VERSION]
   --no-autoupdate          Disable periodic check for updates, restarting the server with the
                            new version. (default: false) [$NO_AUTOUPDATE]
   --loglevel value         Application logging level {debug, info, warn, error, fatal}.
                            (default: "info") [$TUNNEL_LOGLEVEL]
   --logfile value          Save application log to this file for reporting issues.
                            [$TUNNEL_LOGFILE]
   --output value           Output format for the logs (default, json) (default: "default")
                            [$TUNNEL_MANAGEMENT_OUTPUT, $TUNNEL_LOG_OUTPUT]
   --retries value          Maximum number of retries for connection/protocol errors.
                            (default: 5) [$TUNNEL_RETRIES]
   --url URL                Connect to the local webserver at URL. (default:
                            "http://localhost:8080") [$TUNNEL_URL]
   --http-host-header value Sets the HTTP Host header for the local webserver.
                            [$TUNNEL_HTTP_HOST_HEADER]
   --no-tls-verify          Disables TLS verification of the certificate presented by your
                            origin. (default: false) [$NO_TLS_VERIFY]
   --origin-ca-pool value   Path to the CA for the certificate of your origin.
                            [$TUNNEL_ORIGIN_CA_POOL]
   --help, -h               show help
"""

RUN_HELP = """NAME:
   cloudflared tunnel run - Proxy a local web server by running the given tunnel

USAGE:
   cloudflared tunnel [tunnel command options] run [subcommand options] [TUNNEL]

DESCRIPTION:
   Runs the tunnel identified by name or UUID, creating highly available connections
     between your server and the Cloudflare edge. You can provide name or UUID of tunnel to run
     either as command line argument or in the configuration file using "tunnel: TUNNEL".

     This command requires the tunnel credentials file created when "cloudflared tunnel create"
     was run. If you need to specify a custom location, use the --credentials-file flag.

OPTIONS:
   --token value           The Tunnel token. When provided along with credentials, this will
                           take precedence. Also takes precedence over token-file
                           [$TUNNEL_TOKEN]
   --token-file value      Filepath at which to read the tunnel token. When provided along with
                           credentials, this will take precedence. [$TUNNEL_TOKEN_FILE]
   --url URL               Connect to the local webserver at URL. (default:
                           "http://localhost:8080") [$TUNNEL_URL]
   --http-host-header value Sets the HTTP Host header for the local webserver.
                           [$TUNNEL_HTTP_HOST_HEADER]
   --no-tls-verify         Disables TLS verification of the certificate presented by your
                           origin. (default: false) [$NO_TLS_VERIFY]
   --origin-ca-pool value  Path to the CA for the certificate of your origin.
                           [$TUNNEL_ORIGIN_CA_POOL]
   --help, -h              show help
"""
