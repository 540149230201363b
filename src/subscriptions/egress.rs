//! Outbound request policy against server-side request forgery: which addresses webhooks may reach.
//!
//! Subscription endpoints are chosen by API clients, so without a policy they could make the
//! server call its own loopback services, the private network or a cloud metadata address.
//! [`EgressPolicy`] denies every non-public range unless the local configuration allows it;
//! [`EgressPolicy::check_url`] refuses IP literals early, and [`client`] resolves host names
//! through [`PolicyResolver`], so a name (even one that changes answers between the check and the
//! request, as in DNS rebinding) can never lead to a denied address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

const USER_AGENT: &str = concat!("ketamine-fhir-webhooks/", env!("CARGO_PKG_VERSION"));
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> IpNet {
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix)
}

const fn v6(first_segments: [u16; 2], prefix: u8) -> IpNet {
    let [a, b] = first_segments;
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(a, b, 0, 0, 0, 0, 0, 0)), prefix)
}

/// Non-public ranges (RFC 6890 and its successors). IPv4-mapped and NAT64 addresses are not
/// listed: they are judged by the IPv4 address they reach.
const NON_PUBLIC_NETWORKS: [IpNet; 21] = [
    v4(0, 0, 0, 0, 8),
    v4(10, 0, 0, 0, 8),
    v4(100, 64, 0, 0, 10),
    v4(127, 0, 0, 0, 8),
    v4(169, 254, 0, 0, 16),
    v4(172, 16, 0, 0, 12),
    v4(192, 0, 0, 0, 24),
    v4(192, 0, 2, 0, 24),
    v4(192, 168, 0, 0, 16),
    v4(198, 18, 0, 0, 15),
    v4(198, 51, 100, 0, 24),
    v4(203, 0, 113, 0, 24),
    v4(224, 0, 0, 0, 4),
    v4(240, 0, 0, 0, 4),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 128),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    v6([0xfc00, 0], 7),
    v6([0xfe80, 0], 10),
    v6([0xff00, 0], 8),
    v6([0x2001, 0x0db8], 32),
    // Addresses in the well-known NAT64 prefix 64:ff9b::/96 are unwrapped before this list is
    // consulted; the rest of 64:ff9b::/32 holds only local-use NAT64 (RFC 8215) and is denied.
    v6([0x0064, 0xff9b], 32),
];

const NAT64_WELL_KNOWN_PREFIX: IpNet = v6([0x0064, 0xff9b], 96);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("endpoint is not a valid URL: {0}")]
    InvalidUrl(String),
    #[error("endpoint scheme {0:?} is not allowed: only http and https are")]
    UnsupportedScheme(String),
    #[error("endpoint URL has no host")]
    MissingHost,
    #[error("endpoint URL must not contain a username or password")]
    Credentials,
    #[error(
        "endpoint address {0} is not allowed: private, loopback and link-local addresses are denied"
    )]
    DeniedAddress(IpAddr),
    #[error(
        "endpoint host {host} resolves to {address}, which is not allowed: private, loopback and link-local addresses are denied"
    )]
    DeniedHost { host: String, address: IpAddr },
    #[error("endpoint host {host} could not be resolved: {reason}")]
    Unresolvable { host: String, reason: String },
    #[error("endpoint host {0} resolves to no address")]
    NoAddresses(String),
    #[error("denied by the egress policy: {0} resolves only to non-public addresses")]
    DeniedByPolicy(String),
}

/// Which addresses outbound webhook requests may reach.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl EgressPolicy {
    /// The built-in non-public deny list, with `allow` taking precedence over it.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow,
            deny: NON_PUBLIC_NETWORKS.to_vec(),
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let reached = reached_address(ip);
        let allowed = self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&reached));
        allowed || !self.deny.iter().any(|net| net.contains(&reached))
    }

    /// Parses an endpoint and refuses what can be refused without DNS: other schemes,
    /// credentials in the URL, and denied IP literals.
    pub fn check_url(&self, url: &str) -> Result<Url, EgressError> {
        let url = Url::parse(url).map_err(|error| EgressError::InvalidUrl(error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::UnsupportedScheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressError::Credentials);
        }
        let host = host_of(&url)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_ip(ip)?;
        }
        Ok(url)
    }

    /// Resolves the endpoint's host now and refuses it if any address is denied, to give a
    /// clear error when a Subscription is created. Delivery does not rely on this check.
    pub async fn check_host(&self, url: &Url) -> Result<(), EgressError> {
        let host = host_of(url)?;
        let port = url.port_or_known_default().unwrap_or(0);
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| EgressError::Unresolvable {
                host: host.to_owned(),
                reason: error.to_string(),
            })?
            .collect();
        if addresses.is_empty() {
            return Err(EgressError::NoAddresses(host.to_owned()));
        }
        match addresses.iter().find(|address| !self.permits(address.ip())) {
            Some(denied) => Err(EgressError::DeniedHost {
                host: host.to_owned(),
                address: denied.ip(),
            }),
            None => Ok(()),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), EgressError> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(EgressError::DeniedAddress(ip))
        }
    }
}

/// The address a connection to `ip` actually reaches: IPv4-mapped addresses reach their IPv4
/// address through a dual-stack socket, and NAT64 addresses reach theirs through the gateway.
fn reached_address(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(mapped) = v6.to_ipv4_mapped() {
        return IpAddr::V4(mapped);
    }
    if NAT64_WELL_KNOWN_PREFIX.contains(&ip) {
        let [.., a, b, c, d] = v6.octets();
        return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    }
    ip
}

/// The host without the brackets the URL syntax puts around IPv6 literals.
fn host_of(url: &Url) -> Result<&str, EgressError> {
    let host = url.host_str().ok_or(EgressError::MissingHost)?;
    Ok(host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host))
}

/// A DNS resolver for reqwest that drops every address the policy denies.
pub struct PolicyResolver {
    policy: Arc<EgressPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_permitted(
            Arc::clone(&self.policy),
            name.as_str().to_owned(),
        ))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn resolve_permitted(policy: Arc<EgressPolicy>, host: String) -> Result<Addrs, BoxError> {
    // Port 0: reqwest substitutes the URL's port or the scheme's default.
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
    if resolved.is_empty() {
        return Err(EgressError::NoAddresses(host).into());
    }
    let permitted: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|address| policy.permits(address.ip()))
        .collect();
    if permitted.is_empty() {
        return Err(EgressError::DeniedByPolicy(host).into());
    }
    Ok(Box::new(permitted.into_iter()))
}

/// The pooled client for webhook deliveries. Host names resolve through [`PolicyResolver`];
/// IP literals bypass any resolver, so URLs must have passed [`EgressPolicy::check_url`].
/// Redirects are not followed and environment proxies are ignored, since either would let a
/// request reach an address the policy never saw.
pub fn client(
    policy: Arc<EgressPolicy>,
    connect_timeout: Duration,
    total_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PolicyResolver::new(policy)))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(total_timeout)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .user_agent(USER_AGENT)
        .build()
}

/// Parses comma-separated CIDR networks or single addresses (a bare address is one host).
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse_network)
        .collect()
}

fn parse_network(item: &str) -> Result<IpNet, String> {
    item.parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{item:?} is neither a CIDR network nor an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn default_policy() -> EgressPolicy {
        EgressPolicy::new(Vec::new())
    }

    fn loopback_policy() -> EgressPolicy {
        EgressPolicy::new(parse_networks("127.0.0.0/8, ::1/128").unwrap())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_non_public_range_is_denied() {
        let policy = default_policy();
        let examples = [
            "0.0.0.1",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.251",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:0:1::5db8:d822",
        ];
        for example in examples {
            assert!(!policy.permits(ip(example)), "{example} should be denied");
        }
    }

    #[test]
    fn public_addresses_are_permitted() {
        let policy = default_policy();
        let examples = [
            "93.184.216.34",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.3.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
        ];
        for example in examples {
            assert!(policy.permits(ip(example)), "{example} should be permitted");
        }
    }

    #[test]
    fn ipv4_mapped_addresses_are_judged_as_ipv4() {
        let policy = default_policy();
        assert!(!policy.permits(ip("::ffff:10.0.0.1")));
        assert!(!policy.permits(ip("::ffff:127.0.0.1")));
        assert!(loopback_policy().permits(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn allow_overrides_loopback_but_private_ranges_stay_denied() {
        let policy = loopback_policy();
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("::1")));
        assert!(!policy.permits(ip("10.0.0.1")));
        assert!(!policy.permits(ip("::ffff:10.0.0.1")));
        assert!(!policy.permits(ip("192.168.0.10")));
        assert!(!policy.permits(ip("fe80::1")));
    }

    #[test]
    fn check_url_refuses_other_schemes() {
        assert_eq!(
            default_policy().check_url("ftp://example.com/hook"),
            Err(EgressError::UnsupportedScheme("ftp".to_owned()))
        );
    }

    #[test]
    fn check_url_refuses_credentials() {
        let policy = default_policy();
        for url in [
            "https://user:secret@example.com/hook",
            "https://user@example.com/hook",
            "https://:secret@example.com/hook",
        ] {
            assert_eq!(
                policy.check_url(url),
                Err(EgressError::Credentials),
                "{url}"
            );
        }
    }

    #[test]
    fn check_url_refuses_denied_ip_literals() {
        let policy = loopback_policy();
        let refused = policy.check_url("http://10.0.0.5/hook").unwrap_err();
        assert_eq!(refused, EgressError::DeniedAddress(ip("10.0.0.5")));
        assert_eq!(
            refused.to_string(),
            "endpoint address 10.0.0.5 is not allowed: private, loopback and link-local addresses are denied"
        );
        assert_eq!(
            policy.check_url("http://[fd00::5]/hook"),
            Err(EgressError::DeniedAddress(ip("fd00::5")))
        );
        // The URL parser normalises other IPv4 spellings, so they cannot slip past.
        assert_eq!(
            default_policy().check_url("http://0x7f.1/hook"),
            Err(EgressError::DeniedAddress(ip("127.0.0.1")))
        );
    }

    #[test]
    fn check_url_accepts_allowed_loopback_and_public_endpoints() {
        let url = loopback_policy()
            .check_url("http://127.0.0.1:8080/hook")
            .unwrap();
        assert_eq!(url.port(), Some(8080));
        assert!(
            loopback_policy()
                .check_url("http://[::1]:8080/hook")
                .is_ok()
        );
        assert!(
            default_policy()
                .check_url("https://receiver.example.com/hook")
                .is_ok()
        );
        assert!(default_policy().check_url("https://93.184.216.34/").is_ok());
    }

    #[test]
    fn check_url_refuses_what_is_not_a_url() {
        assert!(matches!(
            default_policy().check_url("not a url"),
            Err(EgressError::InvalidUrl(_))
        ));
    }

    #[test]
    fn parse_networks_reads_cidrs_and_bare_addresses() {
        let networks = parse_networks(" 127.0.0.0/8 ,::1, 10.1.2.3/16,\t2001:db8::/32 ").unwrap();
        let expected: Vec<IpNet> = ["127.0.0.0/8", "::1/128", "10.1.0.0/16", "2001:db8::/32"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        assert_eq!(networks, expected);
        assert_eq!(parse_networks("  "), Ok(Vec::new()));
        assert_eq!(parse_networks(""), Ok(Vec::new()));
        assert!(parse_networks("127.0.0.0/33").is_err());
        assert!(parse_networks("localhost").is_err());
    }

    #[tokio::test]
    async fn check_host_denies_localhost_unless_loopback_is_allowed() {
        let url = Url::parse("http://localhost:1/").unwrap();
        let denied = default_policy().check_host(&url).await.unwrap_err();
        assert!(
            matches!(&denied, EgressError::DeniedHost { host, .. } if host == "localhost"),
            "{denied:?}"
        );
        assert_eq!(loopback_policy().check_host(&url).await, Ok(()));
    }

    /// Serves one minimal HTTP/1.1 response to the first connection, then stops.
    async fn serve_one_response(listener: TcpListener) {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => request.extend_from_slice(&buffer[..read]),
            }
        }
        let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
        let _ = stream.write_all(response).await;
        let _ = stream.shutdown().await;
    }

    fn test_client(policy: EgressPolicy) -> reqwest::Client {
        client(
            Arc::new(policy),
            Duration::from_secs(2),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    fn error_chain(error: &dyn std::error::Error) -> String {
        let mut messages = vec![error.to_string()];
        let mut source = error.source();
        while let Some(cause) = source {
            messages.push(cause.to_string());
            source = cause.source();
        }
        messages.join(": ")
    }

    #[tokio::test]
    async fn client_cannot_reach_loopback_by_name_under_the_default_policy() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();

        let error = test_client(default_policy())
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();

        let chain = error_chain(&error);
        assert!(chain.contains("denied by the egress policy"), "{chain}");
        let connection = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(connection.is_err(), "the listener must not be contacted");
    }

    #[tokio::test]
    async fn client_reaches_loopback_by_name_when_loopback_is_allowed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(tokio::time::timeout(
            Duration::from_secs(5),
            serve_one_response(listener),
        ));

        let response = test_client(loopback_policy())
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "ok");
        server.await.unwrap().unwrap();
    }
}
