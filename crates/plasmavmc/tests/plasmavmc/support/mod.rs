//! flaredb, iam and a prismnet controller (prismnet's own test stack), plus a plasmavmc
//! controller, all real servers on 127.0.0.1, in-process.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

#[path = "../../../../prismnet/tests/prismnet/support/mod.rs"]
mod net;

#[allow(unused_imports)] // not every test binary uses every helper
pub use net::{HEADER_VARIANTS, Stack, serve};
use serde_json::Value;
use ultracloud_plasmavmc::network::Prismnet;
use ultracloud_plasmavmc::server::{self, Controller};

/// The stack with plasmavmc on top.
pub struct Compute {
    /// flaredb, iam, prismnet.
    pub s: Stack,
    /// The plasmavmc controller's URL.
    pub vmc: String,
}

impl Compute {
    pub async fn start() -> Self {
        let s = Stack::start().await;
        let guard = ultracloud_iam::guard::Guard::connect(ultracloud_iam::guard::GuardConfig {
            endpoints: vec![s.iam.clone()],
            api_key: s.platform_key.clone(),
        })
        .unwrap();
        let net = Prismnet::new(&s.ctl, guard.tokens().clone()).unwrap();
        let store =
            ultracloud_plasmavmc::records::store(ultracloud_flaredb::Client::new(vec![s.db.to_string()]).unwrap());
        // Images come from the test's own directory, as from an operator's image directory.
        let images = ultracloud_plasmavmc::image_fetch::ImagePolicy {
            file_dirs: vec![s.dir.path().to_path_buf()],
            ..Default::default()
        };
        let ctl = Controller::new(store, net, images);
        tokio::spawn(ctl.clone().watch_versions(tokio_util::sync::CancellationToken::new()));
        let router = server::router(ctl, &guard);
        std::mem::forget(guard); // lives as long as the test process
        let vmc = format!("http://{}", serve(router).await);
        Self { s, vmc }
    }

    /// A call to plasmavmc: status and JSON body.
    pub async fn vmc(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        self.s.call_at(&self.vmc, method, path, token, &[], body).await
    }
}
