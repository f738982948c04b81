//! The OpenAPI document of the controller, served at `/v1/openapi.json`.

use serde_json::Value;

/// Tenant routes: (method, path suffix, summary, action).
const OPERATIONS: &[(&str, &str, &str, &str)] = &[
    (
        "post",
        "/vms",
        "Create a VM {name, image, vcpus?, memory_mib?, nics?: [{subnet}|{port}], volumes?, user_data? (base64), \
         restart_policy? (always|on-failure|never), anti_affinity?, stop_timeout_s?, host?, start?}",
        "compute.vm.create",
    ),
    ("get", "/vms", "List VMs with state and addresses", "compute.vm.list"),
    ("get", "/vms/{id}", "A VM (ID or name) with its state, last report and addresses", "compute.vm.read"),
    ("delete", "/vms/{id}", "Delete a VM: 202 while its worker tears it down, then it is gone", "compute.vm.delete"),
    ("post", "/vms/{id}/start", "Start a stopped VM", "compute.vm.start"),
    ("post", "/vms/{id}/stop", "Stop a VM (ACPI power-off, forced after stop_timeout_s)", "compute.vm.stop"),
    ("post", "/vms/{id}/reboot", "Reset a running VM", "compute.vm.reboot"),
    ("post", "/vms/{id}/migrate", "Move a VM to another worker {target?, live?}", "compute.vm.migrate"),
    ("get", "/vms/{id}/console", "The tail of the VM's serial console (text)", "compute.vm.console"),
    ("get", "/vms/{id}/events", "What happened to the VM", "compute.vm.read"),
    (
        "post",
        "/images",
        "Import an image {name, url, sha256?, format?, kernel_url?, kernel_sha256?, initrd_url?, initrd_sha256?, \
         cmdline?}",
        "compute.image.create",
    ),
    ("get", "/images", "List images", "compute.image.list"),
    ("get", "/images/{id}", "An image", "compute.image.read"),
    ("delete", "/images/{id}", "Delete an image no VM uses", "compute.image.delete"),
    ("post", "/volumes", "Create a volume {name, size_gib}", "storage.volume.create"),
    ("get", "/volumes", "List volumes", "storage.volume.list"),
    ("get", "/volumes/{id}", "A volume", "storage.volume.read"),
    ("delete", "/volumes/{id}", "Delete a detached volume", "storage.volume.delete"),
    ("post", "/volumes/{id}/attach", "Attach to a stopped VM {vm}", "storage.volume.attach"),
    ("post", "/volumes/{id}/detach", "Detach from its (stopped) VM", "storage.volume.detach"),
    ("patch", "/vms/{id}/metadata", META, "compute.vm.update"),
    ("patch", "/images/{id}/metadata", META, "compute.image.update"),
    ("patch", "/volumes/{id}/metadata", META, "storage.volume.update"),
];

/// What every `…/metadata` PATCH does.
const META: &str = "Set or remove labels and annotations {labels?, annotations?} (null removes; If-Match)";

/// Platform routes (agents): (method, path, summary, action).
const PLATFORM: &[(&str, &str, &str, &str)] = &[
    ("get", "/v1/hosts", "Registered workers", "compute.host.list"),
    (
        "put",
        "/v1/hosts/{host}",
        "Register or refresh a worker {vcpus, memory_mib, accel, agent_url, address}",
        "compute.host.update",
    ),
    ("get", "/v1/hosts/{host}/plan", "The VMs and volumes the worker should hold", "compute.host.read"),
    ("put", "/v1/hosts/{host}/vms/{vm}/status", "The worker's report on a VM", "compute.host.update"),
    ("put", "/v1/hosts/{host}/vms/{vm}/console", "The tail of a VM's console (text)", "compute.host.update"),
    ("get", "/v1/watch", "Long poll: answers when the version differs from ?after=", "compute.host.read"),
];

/// The document.
pub fn document() -> Value {
    ultracloud_resource::openapi::build(
        "plasmavmc",
        "Virtual machines on QEMU: VMs, images, volumes, console, events, migration. Resources are addressed by ID \
         or name inside their project.",
        OPERATIONS,
        PLATFORM,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_is_in_the_document() {
        let d = super::document();
        let n: usize = d["paths"].as_object().unwrap().values().map(|v| v.as_object().unwrap().len()).sum();
        assert_eq!(n, super::OPERATIONS.len() + super::PLATFORM.len());
    }
}
