//! Customers (spec §3.4–§3.5): a customer webhook's e-mail is looked up in the CRM; when the
//! person is a cooperative member, their WordPress user gets the partner role in place of
//! `customer`.
//!
//! The decision is the original's: a member is someone with any of the configured membership
//! roles (`SUGARCRM_MEMBERSHIP_ROLES`) among the relationship roles of their CRM Account or
//! Contact; only a user who is a `customer` now is changed. Two things differ:
//!
//! - the user's other roles are kept (the original sent `roles=<partner>`, which WordPress reads
//!   as "these roles only", dropping any other role the user had);
//! - a user who has the partner role already is left alone, so a repeated delivery, a replay or
//!   the `customer.updated` WooCommerce sends after the change itself does nothing.
//!
//! The job is idempotent: a webhook already processed is left alone, and the role is set only
//! while the user lacks it.

use super::process::settle;
use crate::error::{CrmError, JobError, ShopError};
use crate::model::payload;
use crate::model::{Webhook, WebhookStatus};
use crate::ports::{Crm, Shop, WebhookInbox};
use std::fmt;
use std::sync::Arc;

/// The WooCommerce role of a shop customer: the only role upgraded to the partner role.
pub const CUSTOMER_ROLE: &str = "customer";

/// A CRM role without what tells equal roles apart only in form: the carets of SugarCRM's
/// multi-select values (`^member^`) and surrounding spaces.
fn bare(role: &str) -> &str {
    role.trim().trim_matches('^').trim()
}

/// Whether a person with these CRM relationship roles is a member: any of them is one of the
/// configured `membership_roles`. Roles are compared without SugarCRM's carets, so `^member^`
/// and `member` are the same role; an empty role is nobody's.
pub fn is_member(roles: &[String], membership_roles: &[String]) -> bool {
    roles
        .iter()
        .map(|r| bare(r))
        .any(|role| !role.is_empty() && membership_roles.iter().any(|m| bare(m) == role))
}

/// The roles a customer has once made a partner: `customer` replaced by `partner_role`, the
/// other roles kept, no role twice.
pub fn partner_roles(current: &[String], partner_role: &str) -> Vec<String> {
    let mut roles: Vec<String> = Vec::with_capacity(current.len());
    for role in current {
        let role = if role == CUSTOMER_ROLE {
            partner_role
        } else {
            role
        };
        if !roles.iter().any(|r| r == role) {
            roles.push(role.to_owned());
        }
    }
    roles
}

/// What looking a customer up came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerOutcome {
    /// The CRM does not have them as a member: nothing to do.
    NotMember,
    /// A member, but no WordPress user has this e-mail.
    NoUser,
    /// A member whose user has the partner role already (an earlier delivery gave it).
    AlreadyPartner {
        /// The WordPress user.
        user_id: i64,
    },
    /// A member whose user is not a `customer` (a vendor, an administrator, ...): left alone.
    NotCustomer {
        /// The WordPress user.
        user_id: i64,
        /// Their roles.
        roles: Vec<String>,
    },
    /// A member whose user was a `customer` and has the partner role now.
    Upgraded {
        /// The WordPress user.
        user_id: i64,
        /// Their roles now.
        roles: Vec<String>,
    },
}

impl fmt::Display for CustomerOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CustomerOutcome::NotMember => f.write_str("not a member in the CRM"),
            CustomerOutcome::NoUser => {
                f.write_str("a member, but no WordPress user has the e-mail")
            }
            CustomerOutcome::AlreadyPartner { user_id } => {
                write!(f, "a member; user {user_id} has the partner role already")
            }
            CustomerOutcome::NotCustomer { user_id, roles } => write!(
                f,
                "a member; user {user_id} is not a customer (roles: {}), left alone",
                roles.join(",")
            ),
            CustomerOutcome::Upgraded { user_id, roles } => {
                write!(
                    f,
                    "a member; user {user_id} now has roles {}",
                    roles.join(",")
                )
            }
        }
    }
}

/// The customer use case and what it needs: the ports (each an `Arc<dyn Port>`, shared) and who
/// is a member and what they become. Built once by the composition root. Cheap to clone.
#[derive(Clone)]
pub struct CustomerJobs {
    /// The webhook inbox.
    pub inbox: Arc<dyn WebhookInbox>,
    /// The cooperative's CRM.
    pub crm: Arc<dyn Crm>,
    /// The shop (its users).
    pub shop: Arc<dyn Shop>,
    /// The CRM relationship roles that make a member (`SUGARCRM_MEMBERSHIP_ROLES`).
    pub membership_roles: Vec<String>,
    /// The shop role members get (`WP_PARTNER_ROLE`); never empty.
    pub partner_role: String,
}

/// The job error for a CRM error: bad credentials (or rights) are permanent; an unreachable CRM,
/// or one answering nonsense (a maintenance page, a PHP error), is retried.
fn crm_error(e: &CrmError) -> JobError {
    JobError::from_port(e, e.transience())
}

fn shop_error(e: &ShopError) -> JobError {
    JobError::from_error(e)
}

impl CustomerJobs {
    /// Processes a stored customer webhook (as the caller read it): gives the partner role to a
    /// member's user (see the module documentation) and records the webhook as processed, with
    /// what was done as its summary. A webhook not `Queued` any more is left alone.
    ///
    /// # Errors
    /// [`JobError::Permanent`] (the webhook recorded as failed with the reason) for a body that
    /// is not a customer, bad CRM credentials, or a shop that refuses the change;
    /// [`JobError::Transient`] (the webhook left queued) when the CRM, the shop or the inbox
    /// cannot be reached.
    #[tracing::instrument(skip_all, fields(webhook_id = %webhook.id, customer_id = webhook.data.subject_id))]
    pub async fn process_customer(&self, webhook: &Webhook) -> Result<(), JobError> {
        if webhook.data.status != WebhookStatus::Queued {
            return Ok(());
        }
        let result = match payload::customer(&webhook.data.body) {
            Ok(customer) => self.upgrade_if_member(customer.email.trim()).await,
            Err(e) => Err(JobError::Permanent {
                reason: format!("the customer body does not parse: {e}"),
            }),
        };
        let result = result.map(|outcome| {
            let summary = outcome.to_string();
            tracing::info!(webhook_id = webhook.id.0, %summary, "customer processed");
            Some(summary)
        });
        settle(self.inbox.as_ref(), webhook.id, result).await
    }

    /// Looks `email` up in the CRM and, for a member whose WordPress user is a `customer`,
    /// replaces that role with the partner role. Safe to repeat: a user who has the partner role
    /// is not changed again.
    ///
    /// # Errors
    /// As for [`CustomerJobs::process_customer`].
    pub async fn upgrade_if_member(&self, email: &str) -> Result<CustomerOutcome, JobError> {
        let roles = self
            .crm
            .membership_roles(email)
            .await
            .map_err(|e| crm_error(&e))?;
        if !is_member(&roles, &self.membership_roles) {
            tracing::info!("Customer does not have partner role in the CRM");
            return Ok(CustomerOutcome::NotMember);
        }
        tracing::info!("Customer has partner role in the CRM");
        let Some(user) = self
            .shop
            .user_by_email(email)
            .await
            .map_err(|e| shop_error(&e))?
        else {
            tracing::warn!("no WordPress user has the e-mail of a member");
            return Ok(CustomerOutcome::NoUser);
        };
        if user.roles.contains(&self.partner_role) {
            return Ok(CustomerOutcome::AlreadyPartner { user_id: user.id });
        }
        if !user.roles.iter().any(|r| r == CUSTOMER_ROLE) {
            return Ok(CustomerOutcome::NotCustomer {
                user_id: user.id,
                roles: user.roles,
            });
        }
        let wanted = partner_roles(&user.roles, &self.partner_role);
        let updated = self
            .shop
            .set_user_roles(user.id, &wanted)
            .await
            .map_err(|e| shop_error(&e))?;
        tracing::info!(user_id = user.id, "WordPress user given the partner role");
        Ok(CustomerOutcome::Upgraded {
            user_id: user.id,
            roles: if updated.roles.is_empty() {
                wanted
            } else {
                updated.roles
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::InboxError;
    use crate::model::{
        NewWebhook, Recorded, Resource, WebhookEvent, WebhookFilter, WebhookId, WebhookSummary,
    };
    use crate::ports::{MockCrm, MockShop, ShopUser};
    use async_trait::async_trait;
    use std::sync::Mutex;

    fn roles(list: &[&str]) -> Vec<String> {
        list.iter().map(|r| (*r).to_owned()).collect()
    }

    /// One stored webhook whose status the job moves (compare-and-set, as the port promises).
    #[derive(Clone)]
    struct OneWebhook {
        webhook: Arc<Mutex<Webhook>>,
    }

    impl OneWebhook {
        fn customer(body: &str) -> Self {
            OneWebhook {
                webhook: Arc::new(Mutex::new(Webhook {
                    id: WebhookId(7),
                    data: NewWebhook {
                        resource: Resource::Customer,
                        topic: Some("customer.created".into()),
                        event: Some("created".into()),
                        delivery_id: Some("d-1".into()),
                        wc_webhook_id: None,
                        source: None,
                        subject_id: Some(1),
                        subject_modified: None,
                        headers: Vec::new(),
                        body: bytes::Bytes::copy_from_slice(body.as_bytes()),
                        received_at: chrono::DateTime::UNIX_EPOCH,
                        status: WebhookStatus::Queued,
                        error: None,
                    },
                    last_error: None,
                    processed_at: None,
                    pruned: None,
                })),
            }
        }

        fn snapshot(&self) -> Webhook {
            self.webhook.lock().expect("lock").clone()
        }
    }

    #[async_trait]
    impl WebhookInbox for OneWebhook {
        async fn record(&self, _: NewWebhook) -> Result<Recorded, InboxError> {
            unimplemented!()
        }
        async fn get(&self, _: WebhookId) -> Result<Option<Webhook>, InboxError> {
            Ok(Some(self.snapshot()))
        }
        async fn list(&self, _: &WebhookFilter) -> Result<Vec<WebhookSummary>, InboxError> {
            unimplemented!()
        }
        async fn prune_bodies(
            &self,
            _: chrono::DateTime<chrono::Utc>,
            _: usize,
        ) -> Result<u64, InboxError> {
            Ok(0)
        }
        async fn mentioning(
            &self,
            _: &str,
            _: WebhookId,
            _: usize,
        ) -> Result<Vec<Webhook>, InboxError> {
            Ok(Vec::new())
        }
        async fn clear_bodies(
            &self,
            _: &[WebhookId],
            _: crate::model::PruneReason,
        ) -> Result<u64, InboxError> {
            Ok(0)
        }
        async fn transition(
            &self,
            _: WebhookId,
            from: WebhookStatus,
            to: WebhookStatus,
            error: Option<String>,
        ) -> Result<bool, InboxError> {
            let mut w = self.webhook.lock().expect("lock");
            if w.data.status != from {
                return Ok(false);
            }
            w.data.status = to;
            w.last_error = error;
            Ok(true)
        }
        async fn history(&self, _: WebhookId) -> Result<Vec<WebhookEvent>, InboxError> {
            unimplemented!()
        }
        async fn count(&self) -> Result<u64, InboxError> {
            Ok(1)
        }
        async fn order_versions(
            &self,
            _: &[i64],
        ) -> Result<std::collections::HashMap<i64, Option<chrono::DateTime<chrono::Utc>>>, InboxError>
        {
            Ok(std::collections::HashMap::new())
        }
        async fn ping(&self) -> Result<(), InboxError> {
            Ok(())
        }
    }

    const BODY: &str = r#"{"id":1,"email":"partner@email.com","first_name":"Test","last_name":"test","role":"customer","username":"test.test","is_paying_customer":false}"#;

    fn membership() -> Vec<String> {
        roles(&["^member^", "^is_partner^"])
    }

    fn crm_says(found: &'static [&'static str]) -> MockCrm {
        let mut crm = MockCrm::new();
        crm.expect_membership_roles()
            .withf(|email| email == "partner@email.com")
            .returning(move |_| Ok(roles(found)));
        crm
    }

    fn user(roles_now: &[&str]) -> ShopUser {
        ShopUser {
            id: 13,
            email: "partner@email.com".into(),
            roles: roles(roles_now),
        }
    }

    async fn run(inbox: &OneWebhook, crm: MockCrm, shop: MockShop) -> Result<(), JobError> {
        let jobs = CustomerJobs {
            inbox: Arc::new(inbox.clone()),
            crm: Arc::new(crm),
            shop: Arc::new(shop),
            membership_roles: membership(),
            partner_role: "partner".into(),
        };
        let webhook = inbox.snapshot();
        jobs.process_customer(&webhook).await
    }

    #[test]
    fn a_member_has_one_of_the_configured_roles() {
        let m = membership();
        assert!(is_member(&roles(&["^member^"]), &m));
        assert!(is_member(&roles(&["^volunteer^", "^is_partner^"]), &m));
        assert!(!is_member(&roles(&["^volunteer^"]), &m));
        assert!(!is_member(&[], &m));
        assert!(
            !is_member(&roles(&["^member^"]), &[]),
            "no roles configured: nobody"
        );
        assert!(!is_member(&roles(&["", "^^"]), &roles(&["", "^^"])));
        // The carets of SugarCRM's multienum values do not matter.
        assert!(is_member(&roles(&[" member "]), &m));
        assert!(is_member(&roles(&["^member^"]), &roles(&["member"])));
        assert!(
            !is_member(&roles(&["^Member^"]), &m),
            "case matters, as in the CRM"
        );
    }

    #[test]
    fn customer_becomes_the_partner_role_and_other_roles_stay() {
        assert_eq!(partner_roles(&roles(&["customer"]), "partner"), ["partner"]);
        assert_eq!(
            partner_roles(&roles(&["subscriber", "customer"]), "partner"),
            ["subscriber", "partner"]
        );
        assert_eq!(
            partner_roles(&roles(&["customer", "partner"]), "partner"),
            ["partner"]
        );
    }

    #[tokio::test]
    async fn a_member_who_is_a_customer_becomes_a_partner_once() {
        let inbox = OneWebhook::customer(BODY);
        let crm = crm_says(&["^member^"]);
        let mut shop = MockShop::new();
        shop.expect_user_by_email()
            .times(1)
            .returning(|_| Ok(Some(user(&["customer"]))));
        shop.expect_set_user_roles()
            .withf(|id, roles| *id == 13 && roles == ["partner"])
            .times(1)
            .returning(|_, _| Ok(user(&["partner"])));
        run(&inbox, crm, shop).await.expect("processed");
        let w = inbox.snapshot();
        assert_eq!(w.data.status, WebhookStatus::Processed);
        assert_eq!(
            w.last_error.as_deref(),
            Some("a member; user 13 now has roles partner")
        );
        // The same job again (a replay): the webhook is processed, nothing is asked.
        run(&inbox, MockCrm::new(), MockShop::new())
            .await
            .expect("left alone");
    }

    #[tokio::test]
    async fn a_member_already_upgraded_is_left_alone() {
        let inbox = OneWebhook::customer(BODY);
        let crm = crm_says(&["^is_partner^"]);
        let mut shop = MockShop::new();
        shop.expect_user_by_email()
            .returning(|_| Ok(Some(user(&["partner"]))));
        shop.expect_set_user_roles().never();
        run(&inbox, crm, shop).await.expect("processed");
        assert_eq!(
            inbox.snapshot().last_error.as_deref(),
            Some("a member; user 13 has the partner role already")
        );
    }

    #[tokio::test]
    async fn a_member_who_is_not_a_customer_is_left_alone() {
        let inbox = OneWebhook::customer(BODY);
        let crm = crm_says(&["^member^"]);
        let mut shop = MockShop::new();
        shop.expect_user_by_email()
            .returning(|_| Ok(Some(user(&["wcfm_vendor"]))));
        shop.expect_set_user_roles().never();
        run(&inbox, crm, shop).await.expect("processed");
        assert_eq!(inbox.snapshot().data.status, WebhookStatus::Processed);
    }

    #[tokio::test]
    async fn someone_who_is_not_a_member_is_not_looked_up_in_wordpress() {
        let inbox = OneWebhook::customer(BODY);
        let crm = crm_says(&["^volunteer^"]);
        let mut shop = MockShop::new();
        shop.expect_user_by_email().never();
        shop.expect_set_user_roles().never();
        run(&inbox, crm, shop).await.expect("processed");
        let w = inbox.snapshot();
        assert_eq!(w.data.status, WebhookStatus::Processed);
        assert_eq!(w.last_error.as_deref(), Some("not a member in the CRM"));
    }

    #[tokio::test]
    async fn a_member_without_a_user_is_processed() {
        let inbox = OneWebhook::customer(BODY);
        let crm = crm_says(&["^member^"]);
        let mut shop = MockShop::new();
        shop.expect_user_by_email().returning(|_| Ok(None));
        run(&inbox, crm, shop).await.expect("processed");
        assert_eq!(inbox.snapshot().data.status, WebhookStatus::Processed);
    }

    #[tokio::test]
    async fn bad_crm_credentials_fail_the_webhook_with_the_reason() {
        let inbox = OneWebhook::customer(BODY);
        let mut crm = MockCrm::new();
        crm.expect_membership_roles().returning(|_| {
            Err(CrmError::Authentication {
                reason: "Invalid Login".into(),
            })
        });
        let err = run(&inbox, crm, MockShop::new()).await.unwrap_err();
        assert!(matches!(err, JobError::Permanent { .. }), "{err:?}");
        let w = inbox.snapshot();
        assert_eq!(w.data.status, WebhookStatus::Failed);
        assert_eq!(
            w.last_error.as_deref(),
            Some("crm authentication failed: Invalid Login")
        );
    }

    #[tokio::test]
    async fn an_unreachable_crm_or_shop_is_retried_and_the_webhook_stays_queued() {
        let inbox = OneWebhook::customer(BODY);
        let mut crm = MockCrm::new();
        crm.expect_membership_roles().returning(|_| {
            Err(CrmError::Unavailable {
                reason: "connection refused".into(),
                retry_after: None,
            })
        });
        let err = run(&inbox, crm, MockShop::new()).await.unwrap_err();
        assert!(matches!(err, JobError::Transient { .. }), "{err:?}");
        assert_eq!(inbox.snapshot().data.status, WebhookStatus::Queued);

        let crm = crm_says(&["^member^"]);
        let mut shop = MockShop::new();
        shop.expect_user_by_email().returning(|_| {
            Err(ShopError::Unavailable {
                reason: "503".into(),
                retry_after: Some(std::time::Duration::from_secs(9)),
            })
        });
        let err = run(&inbox, crm, shop).await.unwrap_err();
        assert!(
            matches!(err, JobError::Transient { retry_after: Some(d), .. } if d.as_secs() == 9),
            "{err:?}"
        );
        assert_eq!(inbox.snapshot().data.status, WebhookStatus::Queued);
    }

    #[tokio::test]
    async fn a_role_the_shop_refuses_fails_the_webhook() {
        let inbox = OneWebhook::customer(BODY);
        let crm = crm_says(&["^member^"]);
        let mut shop = MockShop::new();
        shop.expect_user_by_email()
            .returning(|_| Ok(Some(user(&["customer"]))));
        shop.expect_set_user_roles().returning(|_, _| {
            Err(ShopError::Rejected {
                reason: "status 400: rest_user_invalid_role".into(),
            })
        });
        let err = run(&inbox, crm, shop).await.unwrap_err();
        assert!(matches!(err, JobError::Permanent { .. }), "{err:?}");
        assert_eq!(inbox.snapshot().data.status, WebhookStatus::Failed);
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_customer_fails_the_webhook() {
        for body in [r#"{"email": "x@y.z"}"#, r#"{"id": 3, "email": " "}"#] {
            let inbox = OneWebhook::customer(body);
            let err = run(&inbox, MockCrm::new(), MockShop::new())
                .await
                .unwrap_err();
            assert!(matches!(err, JobError::Permanent { .. }), "{err:?}");
            assert_eq!(inbox.snapshot().data.status, WebhookStatus::Failed);
        }
    }
}
