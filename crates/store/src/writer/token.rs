//! Creating and revoking API tokens (audited; no revision, no event).

use super::{Write, WriteCx};
use crate::{StoreError, TokenRekey};
use async_trait::async_trait;
use fleetreg_model::ApiToken;
use uuid::Uuid;

/// Creates an API token stored by hash; with `replace`, a token of the same
/// name is replaced (the bootstrap admin token).
pub(crate) struct CreateToken {
    pub token: ApiToken,
    pub hash: String,
    pub replace: bool,
}

#[async_trait]
impl Write for CreateToken {
    type Reply = ApiToken;

    async fn apply(
        &self,
        cx: &mut WriteCx<'_>,
    ) -> Result<Result<ApiToken, StoreError>, StoreError> {
        let action = "token.create";
        if !cx
            .tx
            .insert_token(&self.token, &self.hash, self.replace)
            .await?
        {
            let taken = StoreError::TokenNameTaken(self.token.name.clone());
            return cx.refuse(action, None, taken).await;
        }
        cx.audit_success(action, Some(self.token.id), None).await?;
        Ok(Ok(self.token.clone()))
    }
}

/// Revokes an API token (`TokenNotFound` when there is no active one).
pub(crate) struct RevokeToken(pub Uuid);

#[async_trait]
impl Write for RevokeToken {
    type Reply = ();

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<(), StoreError>, StoreError> {
        let action = "token.revoke";
        if !cx.tx.revoke_token(self.0, cx.at).await? {
            return cx
                .refuse(action, Some(self.0), StoreError::TokenNotFound(self.0))
                .await;
        }
        cx.audit_success(action, Some(self.0), None).await?;
        Ok(Ok(()))
    }
}

/// Replaces stored token hashes (a new key for the stored form); each change
/// applies only while the token still has the old hash.
pub(crate) struct RekeyTokens(pub Vec<TokenRekey>);

#[async_trait]
impl Write for RekeyTokens {
    type Reply = u64;

    async fn apply(&self, cx: &mut WriteCx<'_>) -> Result<Result<u64, StoreError>, StoreError> {
        let mut changed = 0;
        for change in &self.0 {
            if cx
                .tx
                .rekey_token(change.id, &change.from, &change.to)
                .await?
            {
                cx.audit_success("token.rekey", Some(change.id), None)
                    .await?;
                changed += 1;
            }
        }
        Ok(Ok(changed))
    }
}
