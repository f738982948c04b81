//! plasmavmc's wire types: what its API answers and what it takes, in one place for callers
//! (the CLI, the agents) that use [`crate::client`]. The types live beside the code that gives
//! them meaning; this module names the public surface.

pub use crate::model::{
    DiskFormat, Event as VmEvent, Host, Image, ImageFile, Migration, MigrationKind, MigrationStep, Nic, Power,
    RestartPolicy, Vm, VmState, VmStatus, Volume,
};
pub use crate::ops::{MigrateRequest, NewImage, NewVm, NewVolume, NicRequest};
pub use crate::server::{AttachRequest, HostPlan, HostRegistration, PlannedVm, SourceInfo, VmView};
pub use ultracloud_resource::audit::Event;
pub use ultracloud_resource::page::{ListQuery, Page};
pub use ultracloud_resource::watch::WatchAnswer;
