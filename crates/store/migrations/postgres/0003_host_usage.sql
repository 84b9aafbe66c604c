-- v3: resources allocated per host, kept by a trigger on servers (a server's
-- vcpus/ram_mb/disk_gb count on `host`, its src_* on `source_host` during a
-- resize or migration), so placement reads one row per host instead of
-- aggregating every server on each schedule. The rows of one change are
-- upserted in host order, so two moves in opposite directions lock them in
-- the same order.
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
) AS u GROUP BY h;
CREATE FUNCTION lifeboat_servers_usage() RETURNS trigger AS $$
BEGIN
    INSERT INTO host_usage (host, vcpus, ram_mb, disk_gb)
    SELECT h, SUM(c), SUM(r), SUM(d) FROM (
        SELECT OLD.host AS h, -OLD.vcpus AS c, -OLD.ram_mb AS r, -OLD.disk_gb AS d
            WHERE TG_OP <> 'INSERT'
        UNION ALL SELECT OLD.source_host, -OLD.src_vcpus, -OLD.src_ram_mb, -OLD.src_disk_gb
            WHERE TG_OP <> 'INSERT'
        UNION ALL SELECT NEW.host, NEW.vcpus, NEW.ram_mb, NEW.disk_gb
            WHERE TG_OP <> 'DELETE'
        UNION ALL SELECT NEW.source_host, NEW.src_vcpus, NEW.src_ram_mb, NEW.src_disk_gb
            WHERE TG_OP <> 'DELETE'
    ) AS u WHERE h IS NOT NULL GROUP BY h ORDER BY h
    ON CONFLICT (host) DO UPDATE SET vcpus = host_usage.vcpus + excluded.vcpus,
        ram_mb = host_usage.ram_mb + excluded.ram_mb,
        disk_gb = host_usage.disk_gb + excluded.disk_gb;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER servers_usage_change AFTER INSERT OR DELETE ON servers
    FOR EACH ROW EXECUTE FUNCTION lifeboat_servers_usage();
CREATE TRIGGER servers_usage_update AFTER UPDATE ON servers
    FOR EACH ROW WHEN (OLD.host IS DISTINCT FROM NEW.host
        OR OLD.source_host IS DISTINCT FROM NEW.source_host
        OR OLD.vcpus <> NEW.vcpus OR OLD.ram_mb <> NEW.ram_mb OR OLD.disk_gb <> NEW.disk_gb
        OR OLD.src_vcpus <> NEW.src_vcpus OR OLD.src_ram_mb <> NEW.src_ram_mb
        OR OLD.src_disk_gb <> NEW.src_disk_gb)
    EXECUTE FUNCTION lifeboat_servers_usage();
