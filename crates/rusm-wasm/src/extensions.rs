//! The embedder's own values in a process's store.

use std::any::Any;

/// Values the embedder keeps in a process's store, at most one of each type: the
/// per-plugin state its host functions work on (see [`ProcessState::extension_mut`](crate::ProcessState::extension_mut)).
#[derive(Default)]
pub struct Extensions(Vec<Box<dyn Any + Send>>);

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.0.len())
            .finish()
    }
}

impl Extensions {
    /// No values.
    pub fn new() -> Extensions {
        Extensions::default()
    }

    /// These extensions and `value` (replacing any value of its type).
    #[must_use]
    pub fn with<T: Any + Send>(mut self, value: T) -> Extensions {
        self.insert(value);
        self
    }

    /// Keep `value`, returning the value of its type it replaces, if any.
    pub fn insert<T: Any + Send>(&mut self, value: T) -> Option<T> {
        match self.get_mut::<T>() {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.0.push(Box::new(value));
                None
            }
        }
    }

    /// The value of type `T`, if there is one.
    pub fn get<T: Any + Send>(&self) -> Option<&T> {
        self.0.iter().find_map(|value| value.downcast_ref::<T>())
    }

    /// The value of type `T`, if there is one.
    pub fn get_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        self.0
            .iter_mut()
            .find_map(|value| value.downcast_mut::<T>())
    }

    /// The value of type `T`, created with `T::default()` if there is none yet.
    pub fn get_or_default<T: Any + Send + Default>(&mut self) -> &mut T {
        let index = match self.0.iter().position(|value| value.is::<T>()) {
            Some(index) => index,
            None => {
                self.0.push(Box::new(T::default()));
                self.0.len() - 1
            }
        };
        self.0[index]
            .downcast_mut::<T>()
            .expect("the value at this index was checked or made to be a T")
    }

    /// Take the value of type `T` out, if there is one.
    pub fn remove<T: Any + Send>(&mut self) -> Option<T> {
        let index = self.0.iter().position(|value| value.is::<T>())?;
        self.0.swap_remove(index).downcast::<T>().ok().map(|b| *b)
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
