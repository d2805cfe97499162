//! Output through semihosting (the host's stdout under QEMU or a debug probe), behind
//! `embedded_io::Write` so a board's UART driver can replace it unchanged.

use cortex_m_semihosting::hio::{self, HostStream};

/// Semihosting failed (no debugger or emulator answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIoError;

impl embedded_io::Error for HostIoError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

/// The host's stdout.
pub struct Semihosting(HostStream);

impl Semihosting {
    /// Opens the host's stdout.
    pub fn stdout() -> Result<Self, HostIoError> {
        hio::hstdout().map(Semihosting).map_err(|()| HostIoError)
    }
}

impl embedded_io::ErrorType for Semihosting {
    type Error = HostIoError;
}

impl embedded_io::Write for Semihosting {
    fn write(&mut self, buf: &[u8]) -> Result<usize, HostIoError> {
        self.0.write_all(buf).map_err(|()| HostIoError)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), HostIoError> {
        Ok(())
    }
}

/// A pin for boards with nothing wired: the "busy" signal a real board raises around
/// each inference (for a logic analyser) goes nowhere here.
pub struct NoPin;

impl embedded_hal::digital::ErrorType for NoPin {
    type Error = core::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for NoPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
