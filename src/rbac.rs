//! Authorization in one place: roles grant actions on resource types, at site scope, organization scope,
//! or only on what the subject owns. Handlers ask [`Subject::can`] and never inspect roles themselves.
//!
//! The role set is Coder's built-in one (site: owner, member, template-admin, user-admin, auditor;
//! organization: organization-admin, -member, -template-admin, -user-admin, -auditor). Custom roles and
//! template ACLs beyond "Everyone can use templates of its organization" are not modelled yet.

use std::collections::HashMap;

use uuid::Uuid;

pub const ROLE_OWNER: &str = "owner";
pub const ROLE_MEMBER: &str = "member";
pub const ROLE_TEMPLATE_ADMIN: &str = "template-admin";
pub const ROLE_USER_ADMIN: &str = "user-admin";
pub const ROLE_AUDITOR: &str = "auditor";
pub const ROLE_ORG_ADMIN: &str = "organization-admin";
pub const ROLE_ORG_MEMBER: &str = "organization-member";
pub const ROLE_ORG_TEMPLATE_ADMIN: &str = "organization-template-admin";
pub const ROLE_ORG_USER_ADMIN: &str = "organization-user-admin";
pub const ROLE_ORG_AUDITOR: &str = "organization-auditor";

/// Site roles that can be assigned (member is implicit).
pub const SITE_ROLES: &[&str] = &[
    ROLE_OWNER,
    ROLE_TEMPLATE_ADMIN,
    ROLE_USER_ADMIN,
    ROLE_AUDITOR,
];
/// Organization roles that can be assigned (organization-member is implicit).
pub const ORG_ROLES: &[&str] = &[
    ROLE_ORG_ADMIN,
    ROLE_ORG_TEMPLATE_ADMIN,
    ROLE_ORG_USER_ADMIN,
    ROLE_ORG_AUDITOR,
];

pub fn role_display_name(role: &str) -> &'static str {
    match role {
        ROLE_OWNER => "Owner",
        ROLE_MEMBER => "Member",
        ROLE_TEMPLATE_ADMIN => "Template Admin",
        ROLE_USER_ADMIN => "User Admin",
        ROLE_AUDITOR => "Auditor",
        ROLE_ORG_ADMIN => "Organization Admin",
        ROLE_ORG_MEMBER => "Organization Member",
        ROLE_ORG_TEMPLATE_ADMIN => "Organization Template Admin",
        ROLE_ORG_USER_ADMIN => "Organization User Admin",
        ROLE_ORG_AUDITOR => "Organization Auditor",
        _ => "",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    User,
    ApiKey,
    Organization,
    OrganizationMember,
    Group,
    Template,
    File,
    Workspace,
    ProvisionerJob,
    DeploymentConfig,
    PrebuildSettings,
    Notification,
}

/// What is being accessed: its type, and where known the organization and owner it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Object {
    pub resource: Resource,
    pub org_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
}

impl Object {
    pub fn new(resource: Resource) -> Self {
        Self {
            resource,
            org_id: None,
            owner_id: None,
        }
    }
    pub fn in_org(mut self, org_id: Uuid) -> Self {
        self.org_id = Some(org_id);
        self
    }
    pub fn owned_by(mut self, owner_id: Uuid) -> Self {
        self.owner_id = Some(owner_id);
        self
    }
}

/// How far a grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Every object of the type within the role's scope.
    All,
    /// Only objects owned by the subject.
    Own,
}

use Action::*;
use Resource::*;

const ALL: &[Action] = &[Read, Create, Update, Delete];
const READ: &[Action] = &[Read];

type Grants = &'static [(Resource, &'static [Action], Reach)];

fn site_grants(role: &str) -> Grants {
    match role {
        ROLE_MEMBER => &[
            (User, &[Read, Update], Reach::Own),
            (ApiKey, ALL, Reach::Own),
            (Notification, &[Read, Update], Reach::Own),
            (File, &[Read, Create], Reach::Own),
        ],
        ROLE_TEMPLATE_ADMIN => &[
            (Template, ALL, Reach::All),
            (File, ALL, Reach::All),
            (User, READ, Reach::All),
            (Group, READ, Reach::All),
            (OrganizationMember, READ, Reach::All),
            (Workspace, READ, Reach::All),
            (ProvisionerJob, READ, Reach::All),
            (Organization, READ, Reach::All),
        ],
        ROLE_USER_ADMIN => &[
            (User, ALL, Reach::All),
            (OrganizationMember, ALL, Reach::All),
            (Group, ALL, Reach::All),
            (Organization, READ, Reach::All),
        ],
        ROLE_AUDITOR => &[
            (User, READ, Reach::All),
            (Group, READ, Reach::All),
            (OrganizationMember, READ, Reach::All),
            (Template, READ, Reach::All),
            (Organization, READ, Reach::All),
        ],
        _ => &[],
    }
}

fn org_grants(role: &str) -> Grants {
    match role {
        ROLE_ORG_ADMIN => &[
            (Organization, &[Read, Update], Reach::All),
            (OrganizationMember, ALL, Reach::All),
            (Group, ALL, Reach::All),
            (Template, ALL, Reach::All),
            (File, ALL, Reach::All),
            (Workspace, ALL, Reach::All),
            (ProvisionerJob, ALL, Reach::All),
            (User, READ, Reach::All),
        ],
        ROLE_ORG_MEMBER => &[
            (Organization, READ, Reach::All),
            (OrganizationMember, READ, Reach::All),
            (Group, READ, Reach::All),
            // Templates are shared with the Everyone group by default.
            (Template, READ, Reach::All),
            (Workspace, ALL, Reach::Own),
            (ProvisionerJob, READ, Reach::Own),
        ],
        ROLE_ORG_TEMPLATE_ADMIN => &[
            (Template, ALL, Reach::All),
            (File, ALL, Reach::All),
            (Workspace, READ, Reach::All),
            (ProvisionerJob, READ, Reach::All),
            (Group, READ, Reach::All),
            (User, READ, Reach::All),
        ],
        ROLE_ORG_USER_ADMIN => &[
            (OrganizationMember, ALL, Reach::All),
            (Group, ALL, Reach::All),
            (User, READ, Reach::All),
        ],
        ROLE_ORG_AUDITOR => &[
            (Template, READ, Reach::All),
            (OrganizationMember, READ, Reach::All),
            (Group, READ, Reach::All),
        ],
        _ => &[],
    }
}

fn grants(list: Grants, subject: Uuid, action: Action, object: &Object) -> bool {
    list.iter().any(|(resource, actions, reach)| {
        *resource == object.resource
            && actions.contains(&action)
            && match reach {
                Reach::All => true,
                Reach::Own => object.owner_id == Some(subject),
            }
    })
}

/// The authenticated actor: its site roles and its roles in each organization it belongs to.
#[derive(Debug, Clone)]
pub struct Subject {
    pub user_id: Uuid,
    /// Explicit site roles; `member` is implicit.
    pub site_roles: Vec<String>,
    /// Explicit organization roles per membership; `organization-member` is implicit.
    pub org_roles: HashMap<Uuid, Vec<String>>,
}

impl Subject {
    pub fn is_owner(&self) -> bool {
        self.site_roles.iter().any(|r| r == ROLE_OWNER)
    }

    pub fn is_member_of(&self, org: Uuid) -> bool {
        self.org_roles.contains_key(&org)
    }

    pub fn can(&self, action: Action, object: Object) -> bool {
        if self.is_owner() {
            return true;
        }
        let site = std::iter::once(ROLE_MEMBER).chain(self.site_roles.iter().map(String::as_str));
        for role in site {
            if grants(site_grants(role), self.user_id, action, &object) {
                return true;
            }
        }
        let orgs: Vec<Uuid> = match object.org_id {
            Some(org) => vec![org],
            None => Vec::new(),
        };
        for org in orgs {
            if let Some(roles) = self.org_roles.get(&org) {
                let all = std::iter::once(ROLE_ORG_MEMBER).chain(roles.iter().map(String::as_str));
                for role in all {
                    if grants(org_grants(role), self.user_id, action, &object) {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Organizations in which the subject may `action` every object of `resource` (for list filters).
    pub fn orgs_with(&self, action: Action, resource: Resource) -> Vec<Uuid> {
        self.org_roles
            .keys()
            .copied()
            .filter(|org| {
                self.org_roles.get(org).is_some_and(|roles| {
                    std::iter::once(ROLE_ORG_MEMBER)
                        .chain(roles.iter().map(String::as_str))
                        .any(|role| {
                            org_grants(role).iter().any(|(r, actions, reach)| {
                                *r == resource && actions.contains(&action) && *reach == Reach::All
                            })
                        })
                })
            })
            .collect()
    }

    /// Whether the subject may `action` every object of `resource` site-wide.
    pub fn can_site_wide(&self, action: Action, resource: Resource) -> bool {
        self.is_owner()
            || self.site_roles.iter().any(|role| {
                site_grants(role).iter().any(|(r, actions, reach)| {
                    *r == resource && actions.contains(&action) && *reach == Reach::All
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(site: &[&str], orgs: &[(Uuid, &[&str])]) -> Subject {
        Subject {
            user_id: Uuid::new_v4(),
            site_roles: site.iter().map(|s| s.to_string()).collect(),
            org_roles: orgs
                .iter()
                .map(|(o, r)| (*o, r.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn owner_can_everything() {
        let s = subject(&[ROLE_OWNER], &[]);
        assert!(s.can(Delete, Object::new(User)));
        assert!(s.can(Update, Object::new(PrebuildSettings)));
    }

    #[test]
    fn member_reads_only_itself() {
        let org = Uuid::new_v4();
        let s = subject(&[], &[(org, &[])]);
        assert!(s.can(Read, Object::new(User).owned_by(s.user_id)));
        assert!(!s.can(Read, Object::new(User).owned_by(Uuid::new_v4())));
        assert!(!s.can(Create, Object::new(User)));
        assert!(!s.can_site_wide(Read, User));
        assert!(s.can(Read, Object::new(Organization).in_org(org)));
        assert!(!s.can(Read, Object::new(Organization).in_org(Uuid::new_v4())));
        assert!(!s.can(Update, Object::new(PrebuildSettings)));
    }

    #[test]
    fn member_owns_its_workspaces_only() {
        let org = Uuid::new_v4();
        let s = subject(&[], &[(org, &[])]);
        let mine = Object::new(Workspace).in_org(org).owned_by(s.user_id);
        let theirs = Object::new(Workspace).in_org(org).owned_by(Uuid::new_v4());
        assert!(s.can(Delete, mine));
        assert!(!s.can(Read, theirs));
        assert!(s.can(Read, Object::new(Template).in_org(org)));
        assert!(!s.can(Update, Object::new(Template).in_org(org)));
    }

    #[test]
    fn admins_are_scoped() {
        let org = Uuid::new_v4();
        let other = Uuid::new_v4();
        let ua = subject(&[ROLE_USER_ADMIN], &[]);
        assert!(ua.can(Create, Object::new(User)));
        assert!(!ua.can(Update, Object::new(Template).in_org(org)));
        let ta = subject(&[ROLE_TEMPLATE_ADMIN], &[]);
        assert!(ta.can(Update, Object::new(Template).in_org(org)));
        assert!(!ta.can(Create, Object::new(User)));
        let oa = subject(&[], &[(org, &[ROLE_ORG_ADMIN])]);
        assert!(oa.can(Update, Object::new(Template).in_org(org)));
        assert!(!oa.can(Update, Object::new(Template).in_org(other)));
        assert_eq!(oa.orgs_with(Read, User), vec![org]);
    }
}
