//! The words the database stores for states, kinds and statuses, and the only place they are
//! spelt. Everything above `db/` works with the enums: a row decodes into them where it is
//! read (sqlx `Type`/`Decode`/`Encode` for the `Any` driver), and a binding encodes them back.
//! A word this build does not know (written by a newer ember) decodes as `Unknown` instead of
//! failing the whole listing.

use sqlx::any::{Any, AnyTypeInfo, AnyValueRef};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Decode, Encode, Type};

/// An enum stored as one of a fixed set of words, with `Unknown` for any other.
macro_rules! words {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident = $w:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)*
            /// A word this build does not know (written by a newer ember).
            Unknown,
        }

        impl $name {
            /// Every known value, in the order above.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $w,)*
                    $name::Unknown => "unknown",
                }
            }

            pub fn parse(s: &str) -> $name {
                match s {
                    $($w => $name::$v,)*
                    _ => $name::Unknown,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                match $name::parse(&s) {
                    $name::Unknown => Err(serde::de::Error::custom(format!(
                        "unknown {} {s:?}", stringify!($name)
                    ))),
                    v => Ok(v),
                }
            }
        }

        impl Type<Any> for $name {
            fn type_info() -> AnyTypeInfo {
                <str as Type<Any>>::type_info()
            }
            fn compatible(ty: &AnyTypeInfo) -> bool {
                <str as Type<Any>>::compatible(ty)
            }
        }

        impl<'q> Encode<'q, Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <Any as sqlx::Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                <&str as Encode<'q, Any>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> Decode<'r, Any> for $name {
            fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok($name::parse(<&str as Decode<'r, Any>>::decode(value)?))
            }
        }
    };
}

words! {
    /// A volume's or snapshot's status, Cinder's words.
    pub enum Status {
        Creating = "creating",
        Available = "available",
        InUse = "in-use",
        Extending = "extending",
        Deleting = "deleting",
        Deleted = "deleted",
        Error = "error",
        ErrorDeleting = "error_deleting",
        ErrorExtending = "error_extending",
        Maintenance = "maintenance",
    }
}

impl Status {
    /// Usable by a guest (Cinder: available or in-use).
    pub fn is_usable(self) -> bool {
        matches!(self, Status::Available | Status::InUse)
    }

    pub fn is_error(self) -> bool {
        matches!(
            self,
            Status::Error | Status::ErrorDeleting | Status::ErrorExtending
        )
    }

    /// A job is on its way with the row (creating, extending, deleting).
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            Status::Creating | Status::Extending | Status::Deleting
        )
    }
}

words! {
    /// Where a job is in its life.
    pub enum JobState {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl JobState {
    /// Queued or running.
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }

    /// Succeeded, failed or cancelled: nothing more happens to it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

words! {
    /// What a job does.
    pub enum JobKind {
        Create = "create",
        /// A new volume from a snapshot (layering), flattened at once past the clone depth.
        Clone = "clone",
        Flatten = "flatten",
        Extend = "extend",
        Delete = "delete",
        SnapshotCreate = "snapshot_create",
        SnapshotDelete = "snapshot_delete",
        /// Reads a volume back and compares it with a snapshot (`volume verify`): changes
        /// nothing.
        Verify = "verify",
        /// Moves a volume to another backend, keeping its id and name (`volume migrate`).
        Migrate = "migrate",
        /// Copies a volume's data into the backup store (`backup create`).
        BackupCreate = "backup_create",
        /// A new volume from a backup (`backup restore`).
        BackupRestore = "backup_restore",
        /// Removes a backup, and the chunks no other backup holds (`backup delete`).
        BackupDelete = "backup_delete",
    }
}

words! {
    /// Why a snapshot exists.
    pub enum Purpose {
        /// Asked for by an operator.
        User = "user",
        /// Made under `volume create --source`; removed with its last clone.
        Clone = "clone",
    }
}

words! {
    /// What an event in the audit log records.
    pub enum EventKind {
        JobQueued = "job_queued",
        JobStarted = "job_started",
        JobSucceeded = "job_succeeded",
        JobFailed = "job_failed",
        JobCancelled = "job_cancelled",
        JobCancel = "job_cancel",
        JobRequeued = "job_requeued",
        JobTakenOver = "job_taken_over",
        JobLeaseLost = "job_lease_lost",
        ServiceStarted = "service_started",
        ServiceStopped = "service_stopped",
        ServiceDisabled = "service_disabled",
        ServiceEnabled = "service_enabled",
        ServiceRemoved = "service_removed",
        BackendFailed = "backend_failed",
        BackendRecovered = "backend_recovered",
        StateReset = "state_reset",
        VolumeManaged = "volume_managed",
        VolumeUnmanaged = "volume_unmanaged",
        VolumeVerified = "volume_verified",
        VolumeMigrated = "volume_migrated",
        VolumeAttached = "volume_attached",
        VolumeDetached = "volume_detached",
        BackupCreated = "backup_created",
        BackupRestored = "backup_restored",
        BackupDeleted = "backup_deleted",
        MissingImage = "missing_image",
        OrphanImage = "orphan_image",
        ParentMismatch = "parent_mismatch",
        ImagePurged = "image_purged",
        LockBroken = "lock_broken",
        ForcedWhileOpen = "forced_while_open",
    }
}

impl EventKind {
    /// Kinds an operator should notice in the log (the rest is routine).
    pub fn is_alarming(self) -> bool {
        matches!(
            self,
            EventKind::JobFailed
                | EventKind::JobTakenOver
                | EventKind::JobLeaseLost
                | EventKind::BackendFailed
                | EventKind::StateReset
                | EventKind::LockBroken
                | EventKind::ForcedWhileOpen
                | EventKind::MissingImage
                | EventKind::ParentMismatch
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back_as_itself() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), *s);
        }
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), *s);
        }
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()), *k);
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), *k);
        }
        assert_eq!(Status::parse("resizing"), Status::Unknown);
        assert_eq!(JobKind::parse(""), JobKind::Unknown);
    }

    #[test]
    fn json_refuses_a_word_it_does_not_know() {
        assert_eq!(
            serde_json::from_str::<JobKind>("\"snapshot_create\"").unwrap_or(JobKind::Unknown),
            JobKind::SnapshotCreate
        );
        assert!(serde_json::from_str::<JobKind>("\"resize\"").is_err());
        assert_eq!(
            serde_json::to_string(&Status::InUse).unwrap_or_default(),
            "\"in-use\""
        );
    }
}
