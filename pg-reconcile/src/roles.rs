//! The planner's view of the roles: what the snapshot read, changed by the steps planned so
//! far.

use std::collections::{BTreeMap, HashMap};

use crate::snapshot::ExistingRole;

/// A role as the catalog has it (or will have it after the steps so far).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleState {
    /// No such role: never created, or dropped or renamed away.
    Absent,
    /// It exists with no password (`pg_authid.rolpassword` is null).
    NoPassword,
    /// It exists with this stored password (`md5…` or `SCRAM-SHA-256$…`).
    Password(String),
}

impl RoleState {
    /// An existing role with `password` stored (or none).
    pub fn with_password(password: Option<String>) -> RoleState {
        match password {
            Some(password) => RoleState::Password(password),
            None => RoleState::NoPassword,
        }
    }

    /// Whether the role exists.
    pub fn exists(&self) -> bool {
        !matches!(self, RoleState::Absent)
    }

    /// The stored password of an existing role.
    pub fn password(&self) -> Option<&str> {
        match self {
            RoleState::Password(password) => Some(password),
            RoleState::Absent | RoleState::NoPassword => None,
        }
    }
}

/// The roles as they will be after the steps so far: changes over the snapshot, so that a
/// no-op plan copies nothing.
pub(crate) struct Roles<'a> {
    base: &'a HashMap<String, ExistingRole>,
    changed: BTreeMap<String, RoleState>,
}

impl<'a> Roles<'a> {
    /// The roles of the snapshot, unchanged.
    pub(crate) fn new(base: &'a HashMap<String, ExistingRole>) -> Self {
        Roles {
            base,
            changed: BTreeMap::new(),
        }
    }

    /// The role's state now.
    pub(crate) fn get(&self, name: &str) -> RoleState {
        match self.changed.get(name) {
            Some(state) => state.clone(),
            None => match self.base.get(name) {
                Some(role) => RoleState::with_password(role.password.clone()),
                None => RoleState::Absent,
            },
        }
    }

    /// Whether the role exists now.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.get(name).exists()
    }

    /// Records that the role now is `state`.
    pub(crate) fn set(&mut self, name: String, state: RoleState) {
        self.changed.insert(name, state);
    }

    /// Removes the role; returns its state before ([`RoleState::Absent`] when it was not
    /// there).
    pub(crate) fn remove(&mut self, name: &str) -> RoleState {
        let old = self.get(name);
        if old.exists() {
            self.changed.insert(name.to_string(), RoleState::Absent);
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_override_the_snapshot() {
        let mut base = HashMap::new();
        let stored = Some("md5abc".to_string());
        base.insert("a".to_string(), ExistingRole { password: stored });
        base.insert("b".to_string(), ExistingRole { password: None });
        let mut roles = Roles::new(&base);
        assert_eq!(roles.get("a"), RoleState::Password("md5abc".into()));
        assert_eq!(roles.get("b"), RoleState::NoPassword);
        assert_eq!(roles.get("c"), RoleState::Absent);
        assert_eq!(roles.remove("a"), RoleState::Password("md5abc".into()));
        assert!(!roles.contains("a"));
        assert_eq!(roles.remove("c"), RoleState::Absent);
        roles.set("c".into(), RoleState::NoPassword);
        assert!(roles.contains("c") && roles.get("c").password().is_none());
    }
}
