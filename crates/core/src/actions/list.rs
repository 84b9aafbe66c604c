//! The one list of server actions: [`server_actions!`](crate::server_actions).
//! Every row is one action's whole declaration; everything else that names
//! actions (the table, the requests, the workflow kinds and their params,
//! the engine's dispatch and plans) is derived from it.

/// The one list of server actions. Invokes `$callback!` with every row:
///
/// ```text
/// Variant = "name" [as short] { columns }
///     [request Request { fields } [kind(expr)] => handler::path]
///     [params { fields }]
///     [steps [STEP, ...] | steps(plan::path)]
/// ```
///
/// - the columns are the row of [`TABLE`](crate::actions::TABLE) (defaults
///   of `rule`, or of `short` for a record update);
/// - `request`: the typed request a front sends ([`ServerAction`](crate::ServerAction)),
///   `kind` the row it is checked against when not this one, and the
///   engine handler called with its fields;
/// - `params`: the fields its workflow stores, beside the `supersedes` and
///   `was_active` every long action's workflow has
///   ([`WorkflowKind`](crate::workflows::WorkflowKind));
/// - `steps`: the engine's plan, a list of step statics, or a function of
///   the params when the plan depends on them.
///
/// This crate derives [`Action`](crate::Action), `TABLE`, `ServerAction`,
/// `ServerAction::kind`, `WorkflowKind` and its params from it; the engine
/// derives its dispatch and its plans. A new server action is one row here
/// plus its handler and steps (their own file) and its front rendering.
#[macro_export]
macro_rules! server_actions {
    ($callback:ident) => {
        $callback! {
            Create = "create" {
                task_states: Any,
                task_state: Some(T::Scheduling),
                outcome: Outcome::To(V::Active),
                power: Some(P::Running),
                launches: true,
                on_failure: OnFailure::Error,
                checks_lock: false,
                must_have_launched: false,
                guards: &[
                    Guard::ForcedHostNeedsAdmin,
                    Guard::RequestedHostNeedsAdmin(Permission::CreateRequestedDestination),
                ],
            } params {
                networks: Vec<NetworkRequest>,
                no_network: bool,
                /// Requested host (admin).
                host: Option<String>,
            } steps [SCHEDULE, ALLOCATE_PORTS, DEFINE, SPAWN, READY, PASSWORD],
            Update = "update" as short {},
            Delete = "delete" {
                task_states: Any,
                task_state: Some(T::Deleting),
                outcome: Outcome::Gone,
                on_failure: OnFailure::Error,
                must_have_launched: false,
            } request Delete => compute::actions::delete
              steps [WAIT_SUPERSEDED, POWER_OFF, DESTROY, RELEASE_PORTS],
            /// A delete that keeps the server restorable (`reclaim_instance_interval`).
            SoftDelete = "soft_delete" {
                task_states: Any,
                task_state: Some(T::SoftDeleting),
                outcome: Outcome::To(V::SoftDeleted),
                on_failure: OnFailure::Error,
                must_have_launched: false,
            } steps [WAIT_SUPERSEDED, POWER_OFF],
            ForceDelete = "force_delete" {
                task_states: Any,
                task_state: Some(T::Deleting),
                outcome: Outcome::Gone,
                on_failure: OnFailure::Error,
                must_have_launched: false,
            } request ForceDelete => compute::actions::workflow
              steps [WAIT_SUPERSEDED, POWER_OFF, DESTROY, RELEASE_PORTS],
            Restore = "restore" {
                vm_states: Only(&[V::SoftDeleted]),
                task_state: Some(T::Restoring),
                outcome: Outcome::To(V::Active),
                power: Some(P::Running),
                remember: Remember::State,
            } request Restore => compute::actions::workflow
              steps [POWER_ON, READY],
            RebootSoft = "reboot_soft" {
                vm_states: Only(&[V::Active]),
                task_states: Only(&[None]),
                task_state: Some(T::Rebooting),
                outcome: Outcome::To(V::Active),
                on_failure: OnFailure::Error,
            } request Reboot { hard: bool }
              kind(if *hard { Action::RebootHard } else { Action::RebootSoft })
              => compute::actions::reboot
              steps [REBOOT, READY],
            RebootHard = "reboot_hard" {
                vm_states: Only(&[V::Active, V::Stopped, V::Paused, V::Suspended, V::Error]),
                task_states: Only(REBOOT_TASKS),
                task_state: Some(T::RebootingHard),
                outcome: Outcome::To(V::Active),
                on_failure: OnFailure::Error,
            } steps [REBOOT, READY],
            Rebuild = "rebuild" {
                vm_states: Only(&[V::Active, V::Stopped, V::Error]),
                task_state: Some(T::Rebuilding),
                outcome: Outcome::Previous,
                launches: true,
                remember: Remember::StateOrActive,
                forgets_old_state: true,
                clears_fault: true,
                on_failure: OnFailure::Error,
                guards: &[Guard::DiskLocal],
            } request Rebuild {
                image: String,
                name: Option<String>,
                admin_pass: Option<String>,
                metadata: Option<BTreeMap<String, String>>,
                description: Option<Option<String>>,
                key_name: Option<Option<String>>,
                user_data: Option<Option<String>>,
                #[serde(default)]
                preserve_ephemeral: bool,
                hostname: Option<String>,
            } => compute::actions::rebuild
              params { image_id: String }
              steps(moves::rebuild_plan),
            Resize = "resize" {
                vm_states: Only(&[V::Active, V::Stopped]),
                task_state: Some(T::ResizePrep),
                outcome: Outcome::To(V::Resized),
                remember: Remember::State,
                needs_host: true,
                guards: &[Guard::DiskLocal],
            } request Resize { flavor: String } => compute::actions::resize
              params {
                flavor: FlavorSnapshot,
                /// Chosen by `schedule_dest`.
                #[serde(default, skip_serializing_if = "Option::is_none")]
                dest: Option<String>,
              }
              steps(moves::resize_plan),
            ConfirmResize = "confirm_resize" {
                vm_states: Only(&[V::Resized]),
                task_state: Some(T::ResizeConfirming),
                outcome: Outcome::Previous,
                forgets_old_state: true,
            } request ConfirmResize => compute::actions::workflow
              steps [CONFIRM],
            RevertResize = "revert_resize" {
                vm_states: Only(&[V::Resized]),
                task_state: Some(T::ResizeReverting),
                outcome: Outcome::Previous,
                forgets_old_state: true,
            } request RevertResize => compute::actions::workflow
              steps(moves::revert_plan),
            CreateImage = "create_image" {
                vm_states: Only(&[V::Active, V::Stopped, V::Paused, V::Suspended]),
                task_state: Some(T::ImageSnapshotPending),
                checks_lock: false,
                guards: &[Guard::DiskLocal],
            } request CreateImage {
                name: String,
                #[serde(default)]
                metadata: BTreeMap<String, String>,
            } => compute::actions::create_image
              params { image_id: String }
              steps [SNAPSHOT],
            CreateBackup = "create_backup" {
                vm_states: Only(&[V::Active, V::Stopped, V::Paused, V::Suspended]),
                task_state: Some(T::ImageBackup),
                checks_lock: false,
                guards: &[Guard::DiskLocal],
            } request CreateBackup {
                name: String,
                backup_type: String,
                rotation: u32,
                #[serde(default)]
                metadata: BTreeMap<String, String>,
            } => compute::actions::create_backup
              params { image_id: String, backup_type: String, rotation: u32 }
              steps [SNAPSHOT, ROTATE],
            ChangePassword = "change_password" {
                vm_states: Only(&[V::Active]),
                task_state: Some(T::UpdatingPassword),
                needs_host: true,
            } request ChangePassword { admin_pass: String } => compute::actions::change_password
              steps [PASSWORD],
            ResetState = "reset_state" as short {
                checks_lock: false,
                policy: Policy::Admin,
            } request ResetState { state: String } => compute::actions::reset_state,
            Pause = "pause" {
                vm_states: Only(&[V::Active]),
                task_state: Some(T::Pausing),
                outcome: Outcome::To(V::Paused),
                needs_host: true,
            } request Pause => compute::actions::workflow
              steps [PAUSE],
            Unpause = "unpause" {
                vm_states: Only(&[V::Paused]),
                task_state: Some(T::Unpausing),
                outcome: Outcome::To(V::Active),
                power: Some(P::Running),
                needs_host: true,
            } request Unpause => compute::actions::workflow
              steps [UNPAUSE],
            Suspend = "suspend" {
                vm_states: Only(&[V::Active]),
                task_state: Some(T::Suspending),
                outcome: Outcome::To(V::Suspended),
                needs_host: true,
            } request Suspend => compute::actions::workflow
              steps [SUSPEND],
            Resume = "resume" {
                vm_states: Only(&[V::Suspended]),
                task_state: Some(T::Resuming),
                outcome: Outcome::To(V::Active),
                power: Some(P::Running),
                needs_host: true,
            } request Resume => compute::actions::workflow
              steps [RESUME],
            Lock = "lock" as short { checks_lock: false }
                request Lock { reason: Option<String> } => compute::actions::lock,
            Unlock = "unlock" as short {
                checks_lock: false,
                guards: &[Guard::AdminLockNeedsAdmin],
            } request Unlock => compute::actions::unlock,
            Rescue = "rescue" {
                vm_states: Only(&[V::Active, V::Stopped, V::Error]),
                task_state: Some(T::Rescuing),
                outcome: Outcome::To(V::Rescued),
                needs_host: true,
            } request Rescue {
                admin_pass: Option<String>,
                image: Option<String>,
            } => compute::actions::rescue
              params {
                /// Image to boot (None: the default image).
                rescue_image: Option<String>,
              }
              steps [RESCUE, PASSWORD],
            Unrescue = "unrescue" {
                vm_states: Only(&[V::Rescued]),
                task_state: Some(T::Unrescuing),
                outcome: Outcome::To(V::Active),
                power: Some(P::Running),
                needs_host: true,
            } request Unrescue => compute::actions::workflow
              steps [UNRESCUE],
            Evacuate = "evacuate" {
                vm_states: Only(&[V::Active, V::Stopped, V::Error]),
                task_state: Some(T::Rebuilding),
                outcome: Outcome::Previous,
                remember: Remember::StateOrActive,
                forgets_old_state: true,
                clears_fault: true,
                on_failure: OnFailure::Error,
                checks_lock: false,
                guards: &[Guard::SourceHostDown],
                policy: Policy::Admin,
            } request Evacuate {
                host: Option<String>,
                admin_pass: Option<String>,
            } => compute::actions::evacuate
              params {
                /// Requested destination (admin).
                host: Option<String>,
                /// Chosen by `schedule_dest`.
                #[serde(default, skip_serializing_if = "Option::is_none")]
                dest: Option<String>,
              }
              steps(moves::evacuate_plan),
            Start = "start" {
                vm_states: Only(&[V::Stopped]),
                task_state: Some(T::PoweringOn),
                outcome: Outcome::To(V::Active),
                power: Some(P::Running),
                needs_host: true,
            } request Start => compute::actions::workflow
              steps [POWER_ON, READY],
            Stop = "stop" {
                vm_states: Only(&[V::Active, V::Error]),
                task_state: Some(T::PoweringOff),
                outcome: Outcome::To(V::Stopped),
                power: Some(P::Shutdown),
                needs_host: true,
            } request Stop => compute::actions::workflow
              steps [POWER_OFF],
            Shelve = "shelve" {
                vm_states: Only(&[V::Active, V::Stopped, V::Paused, V::Suspended]),
                task_state: Some(T::Shelving),
                outcome: Outcome::Shelved,
                power: Some(P::Shutdown),
                guards: &[Guard::DiskLocal],
            } request Shelve => compute::actions::shelve
              params {
                /// Offload at once (`shelved_offload_time` 0).
                offload: bool,
              }
              steps(images::shelve_plan),
            ShelveOffload = "shelve_offload" {
                vm_states: Only(&[V::Shelved]),
                task_state: Some(T::ShelvingOffloading),
                outcome: Outcome::To(V::ShelvedOffloaded),
                policy: Policy::Admin,
                guards: &[Guard::DiskLocal],
            } request ShelveOffload => compute::actions::workflow
              steps [SHELVE_SNAPSHOT, OFFLOAD],
            Unshelve = "unshelve" {
                vm_states: Only(&[V::Shelved, V::ShelvedOffloaded]),
                task_state: Some(T::Unshelving),
                outcome: Outcome::To(V::Active),
                power: Some(P::Running),
                guards: &[
                    Guard::RequestedHostNeedsAdmin(Permission::UnshelveToHost),
                    Guard::DestinationNeedsOffloaded,
                ],
            } request Unshelve {
                availability_zone: Option<Option<String>>,
                host: Option<String>,
            } => compute::actions::unshelve
              params {
                /// Requested host (admin).
                host: Option<String>,
              }
              steps [SCHEDULE, DEFINE, POWER_ON, READY, FORGET_SHELVED],
            Migrate = "migrate" {
                vm_states: Only(&[V::Active, V::Stopped]),
                task_state: Some(T::ResizePrep),
                outcome: Outcome::To(V::Resized),
                remember: Remember::State,
                needs_host: true,
                policy: Policy::Admin,
                guards: &[Guard::DiskLocal],
            } request Migrate { host: Option<String> } => compute::actions::migrate
              params {
                /// Requested destination (admin).
                host: Option<String>,
                /// Chosen by `schedule_dest`.
                #[serde(default, skip_serializing_if = "Option::is_none")]
                dest: Option<String>,
              }
              steps(moves::resize_plan),
            LiveMigrate = "live_migrate" {
                vm_states: Only(&[V::Active, V::Paused]),
                task_state: Some(T::Migrating),
                needs_host: true,
                policy: Policy::Admin,
                guards: &[Guard::DiskLocal],
            } request LiveMigrate { host: Option<String> } => compute::actions::migrate
              params {
                /// Requested destination (admin).
                host: Option<String>,
                /// Chosen by `schedule_dest`.
                #[serde(default, skip_serializing_if = "Option::is_none")]
                dest: Option<String>,
              }
              steps [SCHEDULE_DEST, LIVE_MIGRATE],
            TriggerCrashDump = "trigger_crash_dump" as short {
                vm_states: Only(&[V::Active, V::Paused, V::Rescued, V::Resized, V::Error]),
                task_states: IDLE,
                needs_host: true,
                must_have_launched: true,
            } request TriggerCrashDump => compute::actions::trigger_crash_dump,
            // Nova's console output policy is PROJECT_MEMBER_OR_ADMIN.
            ConsoleOutput = "console_output" as short {
                checks_lock: false,
                needs_host: true,
            } request ConsoleOutput { length: Option<i64> } => console::output,
            RemoteConsole = "remote_console" as short {
                checks_lock: false,
                needs_host: true,
            } request RemoteConsole {
                protocol: String,
                console_type: String,
            } => console::remote,
            AddSecurityGroup = "add_security_group" as short { checks_lock: false }
                request AddSecurityGroup { name: String } => compute::actions::add_security_group,
            RemoveSecurityGroup = "remove_security_group" as short {
                checks_lock: false,
            } request RemoveSecurityGroup { name: String } => compute::actions::remove_security_group,
            AddFixedIp = "add_fixed_ip" as short {}
                request AddFixedIp { network_id: String } => compute::actions::add_fixed_ip,
            RemoveFixedIp = "remove_fixed_ip" as short {}
                request RemoveFixedIp { address: String } => compute::actions::remove_fixed_ip,
            /// Plugs a port into the server (hot-plug when it runs); Nova's os-interface create.
            AttachInterface = "attach_interface" as short {
                vm_states: Only(&[V::Active, V::Paused, V::Stopped]),
                task_states: IDLE,
                needs_host: true,
            } request
              /// Plugs an interface into the server: a port (`port_id`), or a new port on a
              /// network (`network_id`, optionally at `fixed_ip`), or on the only network
              /// the project can use.
              AttachInterface {
                network_id: Option<String>,
                port_id: Option<String>,
                fixed_ip: Option<String>,
            } => network::interfaces::attach,
            /// Unplugs a port from the server; Nova's os-interface delete.
            DetachInterface = "detach_interface" as short {
                vm_states: Only(&[V::Active, V::Paused, V::Stopped]),
                task_states: IDLE,
                needs_host: true,
            } request
              /// Unplugs the server's port `port_id` (a port made by the attach is deleted,
              /// a port the user brought is unbound).
              DetachInterface { port_id: String } => network::interfaces::detach,
            AddFloatingIp = "add_floating_ip" as short { checks_lock: false }
                request AddFloatingIp {
                    address: String,
                    fixed_address: Option<String>,
                } => compute::actions::add_floating_ip,
            RemoveFloatingIp = "remove_floating_ip" as short {
                checks_lock: false,
            } request RemoveFloatingIp { address: String } => compute::actions::remove_floating_ip,
            /// Runs a maintenance procedure in the guest (through the guest agent)
            /// and logs its output as an event. The worked example of
            /// docs/ARCHITECTURE.md: this row, its handler and its steps file.
            RunMaintenance = "run_maintenance" {
                vm_states: Only(&[V::Active]),
                task_state: Some(T::Maintaining),
                needs_host: true,
            } request
              /// Runs the guest's maintenance procedure `procedure` (a script of the
              /// guest image's `/etc/lifeboat/maintenance.d`).
              RunMaintenance { procedure: String } => maintenance::start
              params { procedure: String }
              steps [maintenance::MAINTENANCE],
            /// Replaces the server's VM with one made from a backup or image snapshot of it
            /// in the snapshot store (AWS OpsWorks CM's RestoreServer): the old VM and its
            /// disks go, the new one keeps the server's id and ports (MAC, fixed and
            /// floating IPs), on its host or the one placement picks. `instant` boots it at
            /// once from the store while the disk is copied in the background.
            RestoreBackup = "restore_backup" {
                vm_states: Only(&[V::Active, V::Stopped, V::Error]),
                task_state: Some(T::RestoringBackup),
                outcome: Outcome::To(V::Active),
                power: Some(P::Running),
                launches: true,
                clears_fault: true,
                on_failure: OnFailure::Error,
            } request
              /// Restores the server from store snapshot `snapshot` (a backup or image
              /// snapshot of this server, or the image id of one); `instant` (default
              /// true) boots it at once from the store, false restores the whole disk first.
              RestoreBackup {
                snapshot: String,
                #[serde(default = "crate::actions::default_true")]
                instant: bool,
            } => compute::restore::start
              params {
                /// Store snapshot restored from.
                snapshot: String,
                /// Its disk (`root`).
                disk: String,
                /// Boot from the store at once, copy in the background.
                instant: bool,
                /// Chosen by `schedule_dest` (the server's host when it has room).
                #[serde(default, skip_serializing_if = "Option::is_none")]
                dest: Option<String>,
              }
              steps [SCHEDULE_DEST, compute::restore::DESTROY_OLD, compute::restore::RESTORE_DEFINE, POWER_ON, READY],
            /// Reads the server's VM state from its host now and records it
            /// (the periodic power sync, for one server on demand). The worked
            /// example of docs/ARCHITECTURE.md.
            SyncPowerState = "sync_power_state" {
                vm_states: Only(&[V::Active, V::Stopped, V::Paused, V::Suspended, V::Rescued, V::Error]),
                task_state: Some(T::SyncingPowerState),
                checks_lock: false,
                needs_host: true,
            } request SyncPowerState => compute::power_sync::start
              steps [compute::power_sync::SYNC_POWER],
        }
    };
}
