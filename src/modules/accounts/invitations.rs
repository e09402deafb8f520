//! Invitations (SPEC §3.2): a member with `members:manage` invites an e-mail address into the account with
//! a role; the invitee gets a single-use link (the token's SHA-256 is all that is stored) valid
//! [`INVITATION_TTL_DAYS`] days, sees who invited them where (`GET /v1/invitations/{token}`), and
//! accepts — logged in as the invited address, or registering through the link, which also verifies
//! that address. Inviting someone again replaces their pending invitation (the old link stops working);
//! inviting a member is 409; an expired, revoked or used link is 410.

use chrono::{Duration, Utc};
use sea_orm::{ActiveModelTrait, Set};
use serde_json::json;
use uuid::Uuid;

use super::entity::{account, invitation, role};
use super::identity::TokenPair;
use super::invitation_store as istore;
use super::service::*;
use super::tenancy::{AccountScope, CurrentUser};
use super::{store, tokens};
use crate::db::list::{ListQuery, Page};
use crate::domain::EmailAddress;
use crate::error::{AppError, AppResult};
use crate::modules::events::{EventBus, EventMeta};

pub const INVITATION_TTL_DAYS: i64 = 7;

pub const PENDING: &str = "pending";
pub const ACCEPTED: &str = "accepted";
pub const REVOKED: &str = "revoked";

/// How registering through an invitation ended.
pub enum NewUserAcceptance {
    /// A member now, signed in.
    SignedIn(Box<TokenPair>),
    /// Signed up; the invitation is accepted when the e-mail is verified with the provider's code.
    VerificationRequired { user_id: Uuid },
}

/// What an invitation link shows before it is accepted.
pub struct InvitationView {
    pub invitation: invitation::Model,
    pub account: account::Model,
    pub role: role::Model,
    pub invited_by: Option<String>,
    /// Whether a user with the invited e-mail exists (log in and accept) or not (register through it).
    pub user_exists: bool,
}

/// The status a client sees: a pending invitation past its expiry reads `expired`.
pub fn shown_status(i: &invitation::Model) -> &str {
    if i.status == PENDING && i.expires_at <= Utc::now() { "expired" } else { &i.status }
}

fn token_hash(token: &str) -> String {
    crate::secret::sha256_hex(format!("invitation:{token}"))
}

fn gone(code: &'static str, message: &str) -> AppError {
    AppError::Gone { code, message: message.to_string() }
}

impl Accounts {
    /// Invites `email` into the account with `role_id` and mails the link. The token is returned once,
    /// to be mailed; it is never stored.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn invite(
        &self,
        scope: AccountScope,
        inviter: &CurrentUser,
        email: &str,
        role_id: Uuid,
        meta: &EventMeta,
    ) -> AppResult<invitation::Model> {
        let email = EmailAddress::canonical(email);
        let role = store::find_role(&self.db, scope, role_id)
            .await?
            .ok_or_else(|| AppError::field("role_id", "no such role in this account"))?;
        if let Some(user) = store::find_user_by_email(&self.db, &email).await?
            && store::find_membership(&self.db, scope, user.id).await?.is_some()
        {
            return Err(AppError::conflict("this person is already a member of the account"));
        }
        let account = self.get_account(scope).await?;
        let token = tokens::new_refresh_token();
        let now = Utc::now();
        let txn = crate::db::begin_write(&self.db).await?;
        istore::revoke_pending(&txn, scope, &email, now).await?;
        let inv = invitation::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            email: Set(email.clone()),
            role_id: Set(role.id),
            token_hash: Set(token_hash(&token)),
            invited_by: Set(Some(inviter.id)),
            status: Set(PENDING.into()),
            expires_at: Set(now + Duration::days(INVITATION_TTL_DAYS)),
            accepted_at: Set(None),
            accepted_by: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit(
            "invitation.created",
            "invitation",
            inv.id,
            Some(scope.account_id()),
            json!({ "email": inv.email, "role_id": inv.role_id, "expires_at": inv.expires_at }),
        );
        self.events.commit(txn, bus).await?;
        let link = self.invitation_url.as_deref().map(|u| u.replace("{token}", &token));
        self.mailer.send(
            &email,
            "invitation",
            &json!({
                "account_name": account.name,
                "inviter_name": inviter.full_name,
                "role": role.name,
                "token": token,
                "link": link,
                "valid_for": format!("{INVITATION_TTL_DAYS} days"),
            }),
        );
        Ok(inv)
    }

    pub async fn list_invitations(&self, scope: AccountScope, q: &ListQuery) -> AppResult<Page<invitation::Model>> {
        istore::list(&self.db, scope, q).await
    }

    /// Revokes a pending invitation (its link stops working); 409 once accepted, 404 for another
    /// account's.
    pub async fn revoke_invitation(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let inv = istore::find(&self.db, scope, id).await?.ok_or(AppError::NotFound("invitation"))?;
        if inv.status == ACCEPTED {
            return Err(AppError::conflict("the invitation was accepted; remove the member instead"));
        }
        let txn = crate::db::begin_write(&self.db).await?;
        if istore::settle(&txn, inv.id, REVOKED, None, Utc::now()).await? {
            let mut bus = EventBus::new(meta.clone());
            bus.emit("invitation.revoked", "invitation", inv.id, Some(inv.account_id), json!({ "email": inv.email }));
            self.events.commit(txn, bus).await?;
        }
        Ok(())
    }

    /// The pending invitation a token names: 404 unknown, 410 `invitation_expired` / `invitation_used`
    /// / `invitation_revoked`.
    async fn live_invitation(&self, token: &str) -> AppResult<invitation::Model> {
        let inv = istore::by_token_hash(&self.db, &token_hash(token.trim()))
            .await?
            .ok_or(AppError::NotFound("invitation"))?;
        match inv.status.as_str() {
            ACCEPTED => Err(gone("invitation_used", "this invitation has already been accepted")),
            REVOKED => Err(gone("invitation_revoked", "this invitation was withdrawn")),
            _ if inv.expires_at <= Utc::now() => {
                Err(gone("invitation_expired", "this invitation has expired; ask for a new one"))
            }
            _ => Ok(inv),
        }
    }

    /// `GET /v1/invitations/{token}`: where the link leads (no login needed: the token is the proof).
    pub async fn preview_invitation(&self, token: &str) -> AppResult<InvitationView> {
        let inv = self.live_invitation(token).await?;
        let scope = AccountScope::checked(inv.account_id);
        let account = self.get_account(scope).await?;
        let role = store::find_role(&self.db, scope, inv.role_id).await?.ok_or(AppError::NotFound("invitation"))?;
        let invited_by = match inv.invited_by {
            Some(id) => store::find_user(&self.db, id).await?.map(|u| u.full_name),
            None => None,
        };
        let user_exists = store::find_user_by_email(&self.db, &inv.email).await?.is_some();
        Ok(InvitationView { invitation: inv, account, role, invited_by, user_exists })
    }

    /// Accepts as the logged-in user, who must have the invited e-mail (403
    /// `invitation_email_mismatch` otherwise); the membership and the used token in one transaction.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn accept_invitation(&self, token: &str, user: &CurrentUser, meta: &EventMeta) -> AppResult<Uuid> {
        let inv = self.live_invitation(token).await?;
        if !user.email.eq_ignore_ascii_case(&inv.email) {
            return Err(AppError::Forbidden {
                code: "invitation_email_mismatch",
                message: "this invitation is for another e-mail address".into(),
            });
        }
        let txn = crate::db::begin_write(&self.db).await?;
        let m = self.join_through(&txn, &inv, user.id).await?;
        let mut bus = EventBus::new(meta.clone());
        super::members::emit_member(&mut bus, "member.added", &m);
        self.commit_access_change(txn, bus).await?;
        Ok(inv.account_id)
    }

    /// Accepts by registering: a new user with the invited e-mail, verified by the link (it reached
    /// that inbox), member of the account, which becomes their default; signed in at once. 409 when a
    /// user with that e-mail exists (they log in and accept). With a provider that confirms addresses
    /// itself (Cognito) the user is signed up and the invitation is accepted when they verify the
    /// e-mail with its code (`verify-email`).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn accept_invitation_as_new_user(
        &self,
        token: &str,
        full_name: &str,
        password_in: &str,
        meta: &EventMeta,
    ) -> AppResult<NewUserAcceptance> {
        let inv = self.live_invitation(token).await?;
        if store::find_user_by_email(&self.db, &inv.email).await?.is_some() {
            return Err(AppError::conflict("a user with this e-mail exists: log in and accept the invitation"));
        }
        if self.identity.confirms_email_itself() {
            let credential = self.identity.sign_up(&inv.email, password_in, full_name.trim()).await?;
            let user = store::insert_user(
                &self.db,
                store::NewUser {
                    email: &inv.email,
                    password_hash: credential.password_hash,
                    provider_subject: credential.subject,
                    full_name: full_name.trim(),
                    verified: false,
                    pending_account_name: None,
                    pending_invitation_id: Some(inv.id),
                },
            )
            .await?;
            self.identity.send_verification_code(&user, true).await?;
            return Ok(NewUserAcceptance::VerificationRequired { user_id: user.id });
        }
        let credential = self.identity.create_verified(&inv.email, password_in, full_name.trim()).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let user = store::insert_user(
            &txn,
            store::NewUser {
                email: &inv.email,
                password_hash: credential.password_hash,
                provider_subject: credential.subject,
                full_name: full_name.trim(),
                verified: true,
                pending_account_name: None,
                pending_invitation_id: None,
            },
        )
        .await?;
        let m = self.join_through(&txn, &inv, user.id).await?;
        let mut active: super::entity::user::ActiveModel = user.into();
        active.default_account_id = Set(Some(inv.account_id));
        let user = active.update(&txn).await?;
        let mut bus = EventBus::new(EventMeta { user_id: Some(user.id), ..meta.clone() });
        super::members::emit_member(&mut bus, "member.added", &m);
        self.commit_access_change(txn, bus).await?;
        let tokens = self.start_session(user.into(), super::identity_provider::Proof::Pending { family: None }).await?;
        Ok(NewUserAcceptance::SignedIn(Box::new(tokens)))
    }

    /// The invitation a user registered through, if it can still be accepted (pending, not expired).
    pub(super) async fn invitation_to_join(&self, id: Option<Uuid>) -> AppResult<Option<invitation::Model>> {
        let Some(id) = id else { return Ok(None) };
        Ok(istore::by_id(&self.db, id).await?.filter(|i| i.status == PENDING && i.expires_at > Utc::now()))
    }

    /// The membership an invitation grants, and the invitation used — only if it was still pending
    /// (two accepts at once: one wins, the other is 410).
    pub(super) async fn join_through(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        inv: &invitation::Model,
        user_id: Uuid,
    ) -> AppResult<super::entity::membership::Model> {
        if !istore::settle(txn, inv.id, ACCEPTED, Some(user_id), Utc::now()).await? {
            return Err(gone("invitation_used", "this invitation has already been accepted"));
        }
        store::insert_membership(txn, inv.account_id, user_id, inv.role_id).await
    }
}
