//! The controller's use of prismnet: VM NICs are prismnet ports bound to the VM's worker as
//! tap devices. Calls go through prismnet's typed client to the tenant's own project path, so
//! a subnet or port of another tenant is simply not found there.

use std::sync::Arc;

use ultracloud_iam::guard::TokenSource;
use ultracloud_prismnet::api::{Binding, NewPort, Plug, Port, PortPatch};
use ultracloud_resource::client::ClientError;

use crate::model::Owner;

/// What went wrong talking to prismnet.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// prismnet refused the request (4xx): the message is for the user.
    #[error("{0}")]
    Refused(String),
    /// prismnet is unreachable or failing.
    #[error("prismnet is unavailable: {0}")]
    Unavailable(String),
}

impl From<ClientError> for NetError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Refused { status, message, .. } if (400..500).contains(&status) => Self::Refused(message),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// prismnet, as the compute controller uses it (with the platform's credentials).
#[derive(Debug, Clone)]
pub struct Prismnet {
    net: ultracloud_prismnet::client::Prismnet,
}

/// The device owner prismnet records for a VM's port.
pub fn device_owner(vm: &str) -> String {
    format!("compute:vm/{vm}")
}

/// A tap binding to `host`.
fn tap_on(host: &str, standby: Option<&str>) -> Binding {
    Binding { host: host.to_owned(), plug: Plug::Tap, standby: standby.map(str::to_owned) }
}

impl Prismnet {
    /// A client of the prismnet replicas at `bases` (`http://host:port,…`).
    pub fn new(bases: &str, tokens: Arc<TokenSource>) -> Result<Self, ClientError> {
        let client =
            ultracloud_resource::client::Client::from_list(ultracloud_prismnet::client::Prismnet::SERVICE, bases)?
                .with_credentials(tokens);
        Ok(Self { net: ultracloud_prismnet::client::Prismnet::new(client) })
    }

    /// Creates a port for `vm` in `subnet` (ID or name), bound to `host` as a tap.
    pub async fn create_port(&self, owner: &Owner, subnet: &str, vm: &str, host: &str) -> Result<Port, NetError> {
        let new = NewPort {
            subnet: subnet.to_owned(),
            name: format!("{vm}-nic"),
            binding: Some(tap_on(host, None)),
            device_owner: device_owner(vm),
            ..NewPort::default()
        };
        Ok(self.net.ports(owner).create(&new).await?)
    }

    /// A port by ID or name.
    pub async fn get_port(&self, owner: &Owner, port: &str) -> Result<Port, NetError> {
        Ok(self.net.ports(owner).get(port).await?)
    }

    /// Binds a port to `vm` on `host` (creation with an existing port, and migrations); with
    /// `standby`, its tap is also made, detached, on that host (a live migration's target).
    pub async fn bind_port(
        &self,
        owner: &Owner,
        port: &str,
        vm: &str,
        host: &str,
        standby: Option<&str>,
    ) -> Result<Port, NetError> {
        let patch = PortPatch {
            binding: Some(Some(tap_on(host, standby))),
            device_owner: Some(device_owner(vm)),
            ..PortPatch::default()
        };
        Ok(self.net.update_port(owner, port, &patch, None).await?)
    }

    /// Unbinds a port the user brought (it stays, with its addresses).
    pub async fn unbind_port(&self, owner: &Owner, port: &str) -> Result<(), NetError> {
        let patch = PortPatch { binding: Some(None), device_owner: Some(String::new()), ..PortPatch::default() };
        match self.net.update_port(owner, port, &patch, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a port plasmavmc created (gone already is fine).
    pub async fn delete_port(&self, owner: &Owner, port: &str) -> Result<(), NetError> {
        match self.net.ports(owner).delete(port).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_the_user_s_and_the_rest_is_unavailability() {
        let refused = |status| ClientError::Refused {
            service: "prismnet".into(),
            status,
            code: "x".into(),
            message: "subnet 'a' not found".into(),
        };
        assert!(matches!(NetError::from(refused(404)), NetError::Refused(m) if m == "subnet 'a' not found"));
        assert!(matches!(NetError::from(refused(503)), NetError::Unavailable(_)));
    }
}
