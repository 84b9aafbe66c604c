//! The networking service's tags of any networking resource.

use super::*;

impl Engine {
    /// Tags of a resource.
    pub async fn tags_get(&self, id: &str) -> NetResult<Vec<String>> {
        Ok(self
            .inner
            .store
            .get::<Tags>(id)
            .await?
            .map(|t| t.tags)
            .unwrap_or_default())
    }

    /// All tags by resource id.
    pub async fn tags_all(&self) -> NetResult<HashMap<String, Vec<String>>> {
        let all: Vec<Tags> = self.inner.store.list().await?;
        Ok(all.into_iter().map(|t| (t.id, t.tags)).collect())
    }

    /// Replaces a resource's tags (the caller checked the resource).
    pub async fn tags_set(&self, id: &str, tags: Vec<String>) -> NetResult<Vec<String>> {
        for t in &tags {
            if t.is_empty() || t.len() > 255 || t.contains(',') {
                return Err(NetError::invalid_input(format!("Invalid tag: {t}")));
            }
        }
        let mut uniq = vec![];
        for t in tags {
            if !uniq.contains(&t) {
                uniq.push(t);
            }
        }
        self.inner
            .store
            .put(&Tags {
                id: id.into(),
                tags: uniq.clone(),
            })
            .await?;
        Ok(uniq)
    }

    /// Adds one tag.
    pub async fn tag_add(&self, id: &str, tag: &str) -> NetResult<()> {
        let mut t = self.tags_get(id).await?;
        t.push(tag.into());
        self.tags_set(id, t).await.map(|_| ())
    }

    /// Removes one tag (404 `TagNotFound` if absent).
    pub async fn tag_remove(&self, id: &str, tag: &str) -> NetResult<()> {
        let mut t = self.tags_get(id).await?;
        if !t.iter().any(|x| x == tag) {
            return Err(NetError::not_found(
                "TagNotFound",
                format!("Tag {tag} could not be found."),
            ));
        }
        t.retain(|x| x != tag);
        self.tags_set(id, t).await.map(|_| ())
    }
}
