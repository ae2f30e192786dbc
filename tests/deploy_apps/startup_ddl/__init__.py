"""An app whose ready() tries a schema change at start-up and notes what happened."""
