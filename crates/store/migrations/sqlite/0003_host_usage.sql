-- v3: resources allocated per host, kept by triggers on servers (a server's
-- vcpus/ram_mb/disk_gb count on `host`, its src_* on `source_host` during a
-- resize or migration), so placement reads one row per host instead of
-- aggregating every server on each schedule.
CREATE TABLE host_usage (
    host TEXT PRIMARY KEY,
    vcpus BIGINT NOT NULL DEFAULT 0,
    ram_mb BIGINT NOT NULL DEFAULT 0,
    disk_gb BIGINT NOT NULL DEFAULT 0
);
INSERT INTO host_usage (host, vcpus, ram_mb, disk_gb)
SELECT h, SUM(c), SUM(r), SUM(d) FROM (
    SELECT host AS h, vcpus AS c, ram_mb AS r, disk_gb AS d FROM servers WHERE host IS NOT NULL
    UNION ALL
    SELECT source_host, src_vcpus, src_ram_mb, src_disk_gb FROM servers WHERE source_host IS NOT NULL
) GROUP BY h;
CREATE TRIGGER servers_usage_insert AFTER INSERT ON servers
BEGIN
    INSERT INTO host_usage (host, vcpus, ram_mb, disk_gb)
    SELECT h, SUM(c), SUM(r), SUM(d) FROM (
        SELECT NEW.host AS h, NEW.vcpus AS c, NEW.ram_mb AS r, NEW.disk_gb AS d
        UNION ALL SELECT NEW.source_host, NEW.src_vcpus, NEW.src_ram_mb, NEW.src_disk_gb
    ) WHERE h IS NOT NULL GROUP BY h
    ON CONFLICT (host) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
        ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
END;
CREATE TRIGGER servers_usage_update AFTER UPDATE ON servers
WHEN OLD.host IS NOT NEW.host OR OLD.source_host IS NOT NEW.source_host
    OR OLD.vcpus <> NEW.vcpus OR OLD.ram_mb <> NEW.ram_mb OR OLD.disk_gb <> NEW.disk_gb
    OR OLD.src_vcpus <> NEW.src_vcpus OR OLD.src_ram_mb <> NEW.src_ram_mb
    OR OLD.src_disk_gb <> NEW.src_disk_gb
BEGIN
    INSERT INTO host_usage (host, vcpus, ram_mb, disk_gb)
    SELECT h, SUM(c), SUM(r), SUM(d) FROM (
        SELECT OLD.host AS h, -OLD.vcpus AS c, -OLD.ram_mb AS r, -OLD.disk_gb AS d
        UNION ALL SELECT OLD.source_host, -OLD.src_vcpus, -OLD.src_ram_mb, -OLD.src_disk_gb
        UNION ALL SELECT NEW.host, NEW.vcpus, NEW.ram_mb, NEW.disk_gb
        UNION ALL SELECT NEW.source_host, NEW.src_vcpus, NEW.src_ram_mb, NEW.src_disk_gb
    ) WHERE h IS NOT NULL GROUP BY h
    ON CONFLICT (host) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
        ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
END;
CREATE TRIGGER servers_usage_delete AFTER DELETE ON servers
BEGIN
    INSERT INTO host_usage (host, vcpus, ram_mb, disk_gb)
    SELECT h, SUM(c), SUM(r), SUM(d) FROM (
        SELECT OLD.host AS h, -OLD.vcpus AS c, -OLD.ram_mb AS r, -OLD.disk_gb AS d
        UNION ALL SELECT OLD.source_host, -OLD.src_vcpus, -OLD.src_ram_mb, -OLD.src_disk_gb
    ) WHERE h IS NOT NULL GROUP BY h
    ON CONFLICT (host) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
        ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
END;
