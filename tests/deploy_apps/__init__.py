"""Small apps whose migrations and hooks deploy_safe is tested against, one per incident shape."""
