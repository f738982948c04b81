pub async fn run(_a: DoctorArgs) -> anyhow::Result<std::process::ExitCode> { todo!() }
#[derive(Debug, clap::Args)] pub struct DoctorArgs {}
