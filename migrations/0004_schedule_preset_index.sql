-- The reconciler's snapshot reads every pool's schedules per tick; without this index that is a full scan
-- of the schedules table per preset.
CREATE INDEX template_version_preset_prebuild_schedules_preset_idx
    ON template_version_preset_prebuild_schedules (preset_id, position);
