//! `ultracloud cluster probe URL…`: GETs each URL and prints its status. The harness runs it
//! inside a node's namespace to prove a surface is reachable *from another node*. An
//! `etcd://host:port` URL asks the etcd v3 API for the member's status instead (200 on success).

use std::time::Duration;

/// One probe's outcome: the URL and its HTTP status, or the error.
pub type Outcome = (String, Result<u16, String>);

/// Connects an etcd client to chainfire at `addr`: over TLS with this process's cluster
/// certificate when it holds one (the lab's chainfire admits nothing else), else plain.
pub async fn etcd_connect(addr: &str, opts: etcd_client::ConnectOptions) -> anyhow::Result<etcd_client::Client> {
    let (url, opts) = match ultracloud_tls::client::holder() {
        Some(tls) => {
            let (ca, cert, key) = tls.pem_parts();
            let tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(ca))
                .identity(etcd_client::Identity::from_pem(cert, key));
            (format!("https://{addr}"), opts.with_tls(tls))
        }
        None => (format!("http://{addr}"), opts),
    };
    Ok(etcd_client::Client::connect([url], Some(opts)).await?)
}

async fn etcd_status(addr: &str) -> Result<u16, String> {
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5));
    let mut c = etcd_connect(addr, opts).await.map_err(|e| format!("{e:#}"))?;
    c.status().await.map(|_| 200).map_err(|e| e.to_string())
}

/// GETs every URL (5 s each).
pub async fn probe(urls: &[String]) -> Vec<Outcome> {
    let http = ultracloud_tls::client::http_client_builder().timeout(Duration::from_secs(5)).build();
    let mut out = Vec::new();
    for url in urls {
        let r = match (url.strip_prefix("etcd://"), &http) {
            (Some(addr), _) => etcd_status(addr).await,
            (None, Ok(h)) => h.get(url).send().await.map(|r| r.status().as_u16()).map_err(|e| e.to_string()),
            (None, Err(e)) => Err(e.to_string()),
        };
        out.push((url.clone(), r));
    }
    out
}

/// Parses the probe's printed lines back (`URL STATUS` or `URL error: …`).
pub fn parse(output: &str) -> Vec<Outcome> {
    output
        .lines()
        .filter_map(|l| {
            let (url, rest) = l.split_once(' ')?;
            let r = rest.parse::<u16>().map_err(|_| rest.to_owned());
            Some((url.to_owned(), r))
        })
        .collect()
}

/// Prints outcomes in the form [`parse`] reads.
pub fn render(outcomes: &[Outcome]) -> String {
    outcomes
        .iter()
        .map(|(u, r)| match r {
            Ok(s) => format!("{u} {s}\n"),
            Err(e) => format!("{u} error: {e}\n"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn render_and_parse_agree() {
        let o = vec![("http://a/x".to_owned(), Ok(200)), ("http://b/y".to_owned(), Err("refused".to_owned()))];
        let back = super::parse(&super::render(&o));
        assert_eq!(back[0], o[0]);
        assert!(back[1].1.as_ref().unwrap_err().contains("refused"));
    }
}
