//! `ultracloud quickstart`: the one-box profile. Makes the host ready, starts every service as
//! one node, then proves the platform end to end — a tenant network and a real VM that answers
//! over it — and stops everything again (or keeps it running with `--keep`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use std::sync::Arc;

use serde_json::Value;
use ultracloud_harness::sys;
use ultracloud_iam::api::{Issued, NewProject, Tenant, TokenRequest};
use ultracloud_plasmavmc::api::{NewVm, NicRequest};
use ultracloud_plasmavmc::client::Plasmavmc;
use ultracloud_prismnet::api::{Binding, NewPort, NewSubnet, NewVpc, Plug};
use ultracloud_prismnet::client::Prismnet;
use ultracloud_resource::client::{Bearer, Client};
use ultracloud_resource::{Labels, Owner};

use ultracloud_harness::quickstart::{Dirs, HOST, NETNS, PROBE_NS, Stack, api_url, running, services, shown};

/// Start the whole platform on this machine as one node and prove it works: admin login, a
/// tenant and project, an S3 key pair and bucket with an object PUT and read back by `aws`, a VPC
/// and subnet, a VM from the guest image on that subnet, its DHCP
/// lease, guest ready, an HTTP request into the guest over the tenant network, then the VM
/// deleted and its port cleaned up. Stops everything at the end unless --keep. Needs root.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Leave the stack and the VM running, and print how to reach them (also
    /// ULTRACLOUD_QUICKSTART_KEEP_VM=1).
    #[arg(long, env = "ULTRACLOUD_QUICKSTART_KEEP_VM", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    keep: bool,
    /// Stop a stack an earlier `--keep` left running.
    #[arg(long, conflicts_with = "keep")]
    stop: bool,
    /// Where the stack keeps its data and logs (emptied at every start).
    #[arg(long, default_value = "/var/lib/ultracloud/quickstart")]
    dir: PathBuf,
    /// Skip installing missing host packages (only check).
    #[arg(long)]
    no_install: bool,
}

/// Prints steps with their time since the start.
struct Steps {
    start: Instant,
    timings: Vec<(String, Duration)>,
}

impl Steps {
    fn say(&self, text: &str) {
        println!("[{:>6.1}s] {text}", self.start.elapsed().as_secs_f64());
    }

    async fn step<T>(&mut self, name: &str, f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        let t = Instant::now();
        let out = f.await.with_context(|| format!("step failed: {name}"))?;
        let took = t.elapsed();
        self.say(&format!("✓ {name} ({:.1}s)", took.as_secs_f64()));
        self.timings.push((name.to_owned(), took));
        Ok(out)
    }
}

/// Runs `quickstart`.
pub async fn run(args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    if !sys::is_root() {
        bail!("the quickstart needs root: it makes a network namespace, bridges and taps and runs QEMU (try sudo)");
    }
    let dirs = Dirs { root: args.dir.clone() };
    let alive = running(&dirs);
    if args.stop {
        if alive.is_empty() {
            println!("no kept quickstart stack is running");
        } else {
            Stack::stop(&alive);
            let _ = std::fs::remove_file(dirs.state());
            let _ = std::fs::remove_file(dirs.root.join(ultracloud_runtime::endpoints::FILE));
            println!("stopped {} services of the kept quickstart stack", alive.len());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !alive.is_empty() {
        let names: Vec<String> = alive.iter().map(|(n, p)| format!("{n} ({p})")).collect();
        bail!("a kept quickstart stack is running: {}; stop it with `ultracloud quickstart --stop`", names.join(", "));
    }
    let mut steps = Steps { start: Instant::now(), timings: Vec::new() };
    let mut stack = Stack::default();
    let outcome = tokio::select! {
        r = prove(&args, &dirs, &mut steps, &mut stack) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted (Ctrl-C)")),
    };
    match outcome {
        Ok(vm) if args.keep => {
            stack.save(&dirs)?;
            ultracloud_harness::quickstart::endpoints(&dirs).write(&dirs.root).context("writing endpoints.json")?;
            print_kept(&dirs, &vm);
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => {
            steps.say("stopping the stack");
            Stack::stop(&stack.pids);
            let total = steps.start.elapsed();
            println!("\nquickstart passed in {:.1}s. Per step:", total.as_secs_f64());
            for (name, d) in &steps.timings {
                println!("  {:>6.1}s  {name}", d.as_secs_f64());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("\nerror: {e:#}");
            eprintln!("logs: {}", shown(&dirs.root.join("logs")));
            eprintln!("stopping what was started …");
            Stack::stop(&stack.pids);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What the end of a kept run prints about the VM.
struct KeptVm {
    ip: String,
    name: String,
}

async fn prove(args: &QuickstartArgs, dirs: &Dirs, steps: &mut Steps, stack: &mut Stack) -> anyhow::Result<KeptVm> {
    stack.accel = steps
        .step("host prerequisites (ultracloud doctor)", async {
            let (ready, accel) = super::doctor::ensure_ready(!args.no_install).await?;
            ensure!(ready, "the host is not ready: see the table above");
            Ok(accel.to_owned())
        })
        .await?;
    let image_dir = ultracloud_guest_image::default_out_dir();
    steps
        .step("guest image", async {
            let agent = ultracloud_guest_image::default_guest_agent_path();
            // An image older than the guest agent next to this binary is rebuilt.
            let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            let built = modified(&image_dir.join(ultracloud_guest_image::MANIFEST_FILE));
            let current = ultracloud_guest_image::read_manifest(&image_dir).is_ok()
                && agent.as_deref().and_then(modified).is_none_or(|a| built.is_some_and(|b| b >= a));
            if current {
                return Ok(());
            }
            let agent = agent.context(format!(
                "the static guest agent is not built: {}",
                ultracloud_guest_image::STATIC_AGENT_BUILD
            ))?;
            tokio::task::spawn_blocking(move || {
                ultracloud_guest_image::build(&ultracloud_guest_image::BuildOptions::new(agent), |l| {
                    println!("          {l}")
                })
            })
            .await??;
            Ok(())
        })
        .await?;
    steps.step("fresh quickstart directory and network namespace", async { Stack::prepare(dirs) }).await?;
    for s in services() {
        let name = format!("{} ready", s.name);
        steps
            .step(&name, async {
                stack.start(dirs, &s)?;
                stack.wait_ready(dirs, &s).await
            })
            .await?;
    }

    // The quickstart is an operator of its stack: it holds the admin certificate.
    ultracloud_tls::client::install_dir(&dirs.tls("admin"))?;
    let login = Client::new("iam", &[api_url(8480)])?;
    let token = steps
        .step("admin login through iam", async {
            let password = ultracloud_runtime::secret_file::read(&dirs.admin_password())?;
            let grant = TokenRequest::Password { username: "admin".into(), password: password.trim().into() };
            let issued: Issued = login.post(&["v1", "auth", "token"]).json(&grant).retry_safe().fetch().await?;
            anyhow::Ok(issued.access_token)
        })
        .await?;
    // The proof is a client like any other: the typed clients, with the admin's token.
    let bearer = Arc::new(Bearer(token));
    let client = |service: &str, port: u16| {
        Client::new(service, &[api_url(port)]).map(|c| c.with_credentials(bearer.clone()).with_timeout(CALL_TIMEOUT))
    };
    let iam_api = client("iam", 8480)?;
    let net = Prismnet::new(client(Prismnet::SERVICE, 8580)?);
    let vmc = Plasmavmc::new(client(Plasmavmc::SERVICE, 8680)?);
    let owner = Owner { tenant: "demo".into(), project: "quickstart".into() };
    steps
        .step("tenant demo, project quickstart", async {
            iam_api
                .post(&["v1", "tenants"])
                .json(&Tenant { id: "demo".into(), display_name: String::new() })
                .done()
                .await?;
            iam_api
                .post(&["v1", "tenants", "demo", "projects"])
                .json(&NewProject { id: "quickstart".into() })
                .done()
                .await?;
            anyhow::Ok(())
        })
        .await?;
    steps
        .step("S3: a key pair, a bucket, 6 MiB PUT and GET back with aws", async {
            s3_round_trip(&bearer.0, dirs).await
        })
        .await?;
    let vni = steps
        .step("VPC 10.42.0.0/16 and subnet 10.42.1.0/24", async {
            let meta = || (Labels::from([("app".to_owned(), "quickstart".to_owned())]), Labels::new());
            let (labels, annotations) = meta();
            let vpc = NewVpc { name: "demo".into(), cidr: "10.42.0.0/16".parse()?, labels, annotations };
            net.vpcs(&owner).create(&vpc).await?;
            let (labels, annotations) = meta();
            let subnet = NewSubnet {
                name: "demo".into(),
                vpc: "demo".into(),
                cidr: "10.42.1.0/24".parse()?,
                gateway: None,
                no_gateway: false,
                dhcp: None,
                dns_servers: Vec::new(),
                pools: Vec::new(),
                labels,
                annotations,
            };
            Ok(net.subnets(&owner).create(&subnet).await?.vni)
        })
        .await?;
    steps
        .step("guest image imported", async {
            Ok(vmc.images(&owner).create(&super::compute::guest_import("guest", &image_dir)?).await?)
        })
        .await?;
    let vm = steps
        .step("VM created on the subnet", async {
            let ud = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, br#"{"hostname": "demo-vm"}"#);
            let new = NewVm {
                name: "demo-vm".into(),
                image: "guest".into(),
                vcpus: None,
                memory_mib: Some(256),
                nics: vec![NicRequest { subnet: Some("demo".into()), port: None }],
                volumes: Vec::new(),
                user_data: Some(ud),
                restart_policy: None,
                anti_affinity: None,
                stop_timeout_s: Some(10),
                host: None,
                start: None,
                labels: Labels::new(),
                annotations: Labels::new(),
            };
            Ok(vmc.vms(&owner).create(&new).await?)
        })
        .await?;
    let ip = vm.addresses.first().map(ToString::to_string).unwrap_or_default();
    let nic = vm.vm.nics.first().context("the VM has no NIC")?;
    let (mac, port) = (nic.mac.to_lowercase(), nic.port.clone());
    let leases = dirs.data("prismnet-agent").join("dhcp").join(format!("{vni:x}")).join("leases");
    steps
        .step(&format!("DHCP lease for {ip}"), async {
            wait(Duration::from_secs(180), "the DHCP lease", || async {
                std::fs::read_to_string(&leases).is_ok_and(|l| l.to_lowercase().contains(&mac) && l.contains(&ip))
            })
            .await
        })
        .await?;
    steps
        .step("guest ready (its agent reported on the serial console)", async {
            wait(Duration::from_secs(180), "the guest", || async {
                vmc.vms(&owner).get("demo-vm").await.is_ok_and(|v| v.status.is_some_and(|s| s.guest_ready))
            })
            .await
        })
        .await?;
    steps
        .step("HTTP into the guest over the tenant network", async {
            plug_probe(&net, &owner).await?;
            wait(Duration::from_secs(60), "the guest's HTTP answer", || async {
                sys::in_ns(PROBE_NS, "curl", &["-sf", "-m", "3", &format!("http://{ip}/health")]).is_ok()
            })
            .await
        })
        .await?;
    steps
        .step("the CLI lists the project's ports, page by page", async {
            cli_lists_every_port(&bearer.0, &dirs.ca_file(), &net, &owner).await
        })
        .await?;
    steps
        .step("POST /visit and GET /state round-trip", async {
            sys::in_ns(PROBE_NS, "curl", &["-sf", "-m", "3", "-X", "POST", &format!("http://{ip}/visit")])?;
            let state = sys::in_ns(PROBE_NS, "curl", &["-sf", "-m", "3", &format!("http://{ip}/state")])?;
            let v: Value = serde_json::from_str(&state).with_context(|| format!("GET /state answered {state:?}"))?;
            ensure!(v["visits"] == 1, "the guest counted {} visits, expected 1", v["visits"]);
            Ok(())
        })
        .await?;
    if args.keep {
        return Ok(KeptVm { ip, name: "demo-vm".into() });
    }
    steps
        .step("VM deleted and its port cleaned up", async {
            vmc.vms(&owner).delete("demo-vm").await?;
            wait(Duration::from_secs(60), "the VM gone", || async {
                vmc.vms(&owner).get("demo-vm").await.is_err_and(|e| e.is_not_found())
            })
            .await?;
            match net.ports(&owner).get(&port).await {
                Err(e) if e.is_not_found() => {}
                other => bail!("the VM's port is still there: {other:?}"),
            }
            let tap = ultracloud_prismnet::agent::nft::port_dev(&port);
            wait(Duration::from_secs(30), "the tap removed", || async {
                sys::ip(&["-n", NETNS, "link", "show", &tap]).is_err()
            })
            .await
        })
        .await?;
    Ok(KeptVm { ip, name: "demo-vm".into() })
}

/// How long one API call of the proof may take (an image import reads the image once).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// `ultracloud port list --page-size 1 -o json` (this binary, as a user runs it) shows every
/// port the API lists: the CLI's session, TLS, typed client and paging, end to end.
async fn cli_lists_every_port(token: &str, ca: &std::path::Path, net: &Prismnet, owner: &Owner) -> anyhow::Result<()> {
    let want: Vec<String> = net.ports(owner).list_all(&Default::default()).await?.into_iter().map(|p| p.id).collect();
    ensure!(want.len() >= 2, "expected the VM's and the probe's ports, the API lists {want:?}");
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["port", "list", "--page-size", "1", "-o", "json", "-t", &owner.tenant, "-p", &owner.project])
        .env("ULTRACLOUD_TOKEN", token)
        .env("ULTRACLOUD_CA_FILE", ca)
        .env("ULTRACLOUD_PRISMNET", api_url(8580))
        .output()?;
    ensure!(out.status.success(), "the CLI failed: {}", String::from_utf8_lossy(&out.stderr));
    let listed: Vec<ultracloud_prismnet::api::Port> =
        serde_json::from_slice(&out.stdout).context("the CLI's -o json is not a list of ports")?;
    let got: Vec<String> = listed.into_iter().map(|p| p.id).collect();
    ensure!(got == want, "the CLI listed {got:?}, the API {want:?}");
    Ok(())
}

/// The proof's bucket and object.
const S3_BUCKET: &str = "demo";
const S3_OBJECT: &str = "hello.bin";

/// lightningstor as a user meets it: `ultracloud s3 credentials create --write` (this binary),
/// then the AWS CLI makes a bucket, PUTs 6 MiB (two blocks) and GETs it back byte for byte.
async fn s3_round_trip(token: &str, dirs: &Dirs) -> anyhow::Result<()> {
    let creds = dirs.s3_credentials();
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["s3", "credentials", "create", "-t", "demo", "-p", "quickstart", "--description", "quickstart"])
        .arg("--write")
        .arg(&creds)
        .env("ULTRACLOUD_TOKEN", token)
        .env("ULTRACLOUD_CA_FILE", dirs.ca_file())
        .env("ULTRACLOUD_IAM", api_url(8480))
        .output()?;
    ensure!(out.status.success(), "ultracloud s3 credentials create failed: {}", String::from_utf8_lossy(&out.stderr));
    let data: Vec<u8> = (0..6u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (put, got) = (dirs.root.join("s3-put.bin"), dirs.root.join("s3-got.bin"));
    std::fs::write(&put, &data)?;
    let url = format!("s3://{S3_BUCKET}/{S3_OBJECT}");
    aws(dirs, &["s3", "mb", &format!("s3://{S3_BUCKET}")])?;
    aws(dirs, &["s3", "cp", &put.display().to_string(), &url])?;
    aws(dirs, &["s3", "cp", &url, &got.display().to_string()])?;
    let back = std::fs::read(&got)?;
    ensure!(back == data, "the object came back different ({} bytes of {})", back.len(), data.len());
    let listed = aws(dirs, &["s3", "ls", &format!("s3://{S3_BUCKET}/")])?;
    ensure!(listed.contains(S3_OBJECT), "aws s3 ls does not show {S3_OBJECT}: {listed}");
    for f in [put, got] {
        let _ = std::fs::remove_file(f);
    }
    Ok(())
}

/// The environment that points the AWS CLI at the stack's gateway with the proof's key pair.
fn aws_env(dirs: &Dirs) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_SHARED_CREDENTIALS_FILE", dirs.s3_credentials().display().to_string()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CA_BUNDLE", dirs.ca_file().display().to_string()),
    ]
}

/// Runs `aws --endpoint-url <gateway> ARGS`; its stdout.
fn aws(dirs: &Dirs, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("aws")
        .args(["--endpoint-url", &api_url(8790)])
        .args(args)
        .envs(aws_env(dirs))
        .output()
        .context("running aws (Debian package awscli; `ultracloud doctor --install` installs it)")?;
    ensure!(out.status.success(), "aws {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Plugs the probe namespace into the subnet (a port bound as a veth) with its fixed address.
async fn plug_probe(net: &Prismnet, owner: &Owner) -> anyhow::Result<()> {
    sys::ip(&["netns", "add", PROBE_NS])?;
    sys::ip(&["-n", PROBE_NS, "link", "set", "lo", "up"])?;
    let probe = NewPort {
        subnet: "demo".into(),
        name: "probe".into(),
        binding: Some(Binding { host: HOST.into(), plug: Plug::Netns { netns: PROBE_NS.into() }, standby: None }),
        ..NewPort::default()
    };
    let p = net.ports(owner).create(&probe).await?;
    let ip = p.fixed_ips.first().context("the probe's port has no address")?;
    wait(Duration::from_secs(30), "the probe plugged", || async {
        sys::ip(&["-n", PROBE_NS, "link", "show", "eth0"]).is_ok()
    })
    .await?;
    sys::ip(&["-n", PROBE_NS, "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
    Ok(())
}

async fn wait<F, Fut>(bound: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        if start.elapsed() > bound {
            bail!("{what}: not within {}s", bound.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

fn print_kept(dirs: &Dirs, vm: &KeptVm) {
    println!(
        "\nThe stack and VM {name} are running (stop them with `ultracloud quickstart --stop`).

  iam        https://127.0.0.1:8480    admin password: {pw}
  prismnet   https://127.0.0.1:8580    plasmavmc  https://127.0.0.1:8680
  chainfire  https://127.0.0.1:2379    flaredb    https://127.0.0.1:2479
  S3         https://127.0.0.1:8790    key pair of demo/quickstart: {creds}
  cluster CA {ca}   (every API speaks TLS; chainfire and flaredb want a certificate)
  logs       {logs}
  endpoints  {endpoints}   (the above as JSON, for scripts)

  ultracloud login -u admin --password-file {pw} --ca-file {ca}
  ultracloud vm list -t demo -p quickstart
  ultracloud db --tls-dir {admin} regions
  etcdctl --endpoints=https://127.0.0.1:2379 --cacert={ca} --cert={admin}/cert.pem --key={admin}/key.pem member list
  ultracloud vm console {name} -t demo -p quickstart
  AWS_SHARED_CREDENTIALS_FILE={creds} AWS_CA_BUNDLE={ca} AWS_DEFAULT_REGION=us-east-1 \\
    aws --endpoint-url https://127.0.0.1:8790 s3 ls s3://{bucket}/      # lightningstor (S3)
  ip netns exec {probe} curl http://{ip}/state        # the VM, over the tenant network",
        name = vm.name,
        pw = shown(&dirs.admin_password()),
        ca = shown(&dirs.ca_file()),
        admin = shown(&dirs.tls("admin")),
        logs = shown(&dirs.root.join("logs")),
        endpoints = shown(&dirs.root.join(ultracloud_runtime::endpoints::FILE)),
        probe = PROBE_NS,
        ip = vm.ip,
        creds = shown(&dirs.s3_credentials()),
        bucket = S3_BUCKET,
    );
}
