//! The web page's admin password, its reset, and the first setup's token.

use crate::error::{HomeError, Kind, Result};
use crate::store::PasswordRecord;

use super::Home;

impl Home {
    pub fn admin_password(&self) -> Result<Option<PasswordRecord>> {
        Ok(self.store.admin_password()?)
    }

    /// First run only: set the admin password and retire the setup token.
    pub fn set_first_admin_password(&self, rec: &PasswordRecord) -> Result<()> {
        self.store.set_first_admin_password(rec)?;
        crate::auth::remove_setup_token(&self.settings.data_dir);
        tracing::info!("the web page's admin password was set");
        Ok(())
    }

    /// Forget the admin password (from the router's shell, when it is lost): every web
    /// session ends and a new setup token is written for the next first run.
    pub fn reset_admin_password(&self) -> Result<String> {
        let had = self.store.clear_admin_password()?;
        self.password_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        crate::auth::remove_setup_token(&self.settings.data_dir);
        tracing::info!(
            had_password = had,
            "the web page's admin password was reset"
        );
        self.setup_token()
    }

    /// Sessions remember this at login; a reset moves it.
    pub fn password_epoch(&self) -> u64 {
        u64::from(
            self.password_epoch
                .load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    /// The first-run token for the web page, or `Conflict` once a password is set.
    pub fn setup_token(&self) -> Result<String> {
        if self.admin_password()?.is_some() {
            return Err(HomeError::new(
                Kind::Conflict,
                "the admin password is already set, so there is no setup token: log in on the router page with the password",
            ));
        }
        crate::auth::ensure_setup_token(&self.settings.data_dir).map_err(|e| {
            HomeError::new(
                Kind::Internal,
                format!(
                    "cannot write the setup token in {}: {e}",
                    self.settings.data_dir.display()
                ),
            )
        })
    }
}
