//! The example pipelines for loghub's cluster and server datasets without a sample under
//! `shared/` (Hadoop, HPC, BGL, Thunderbird, OpenStack): real lines through the real binary.
//!
//! Lines are from github.com/logpai/loghub `<Dataset>/<Dataset>_2k.log`. A case marked `csv N`
//! is row N of `<Dataset>_2k.log_structured.csv` (the ground truth) with its columns renamed
//! as the pipeline's header says; `format` cases apply logparser's benchmark `log_format`.

use crate::support;

use support::loghub::check;

#[test]
fn hadoop_example_splits_real_lines() {
    check(
        "loghub-hadoop.yaml",
        &["date", "time", "log.level", "process.thread.name", "log.logger", "message"],
        &[
            // csv 1
            (
                "2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: Created MRAppMaster for application appattempt_1445144423722_0020_000001",
                &["2015-10-18", "18:01:47,978", "INFO", "main", "org.apache.hadoop.mapreduce.v2.app.MRAppMaster", "Created MRAppMaster for application appattempt_1445144423722_0020_000001"],
            ),
            // csv 30: a thread name with blanks and `#`
            (
                "2015-10-18 18:01:51,775 INFO [Socket Reader #1 for port 62260] org.apache.hadoop.ipc.Server: Starting Socket Reader #1 for port 62260",
                &["2015-10-18", "18:01:51,775", "INFO", "Socket Reader #1 for port 62260", "org.apache.hadoop.ipc.Server", "Starting Socket Reader #1 for port 62260"],
            ),
            // csv 33: `: ` again in the content
            (
                "2015-10-18 18:01:51,806 INFO [IPC Server Responder] org.apache.hadoop.ipc.Server: IPC Server Responder: starting",
                &["2015-10-18", "18:01:51,806", "INFO", "IPC Server Responder", "org.apache.hadoop.ipc.Server", "IPC Server Responder: starting"],
            ),
            // csv 57
            (
                "2015-10-18 18:01:53,713 INFO [main] org.apache.hadoop.mapreduce.v2.app.rm.RMContainerAllocator: maxContainerCapability: <memory:8192, vCores:32>",
                &["2015-10-18", "18:01:53,713", "INFO", "main", "org.apache.hadoop.mapreduce.v2.app.rm.RMContainerAllocator", "maxContainerCapability: <memory:8192, vCores:32>"],
            ),
            // format: a trailing blank (logparser strips every line)
            (
                "2015-10-18 18:07:34,205 ERROR [RMCommunicator Allocator] org.apache.hadoop.mapreduce.v2.app.rm.RMContainerAllocator: ERROR IN CONTACTING RM. ",
                &["2015-10-18", "18:07:34,205", "ERROR", "RMCommunicator Allocator", "org.apache.hadoop.mapreduce.v2.app.rm.RMContainerAllocator", "ERROR IN CONTACTING RM."],
            ),
            // format: colons and `@` in the thread name, two blanks in the content
            (
                "2015-10-18 18:07:34,393 WARN [LeaseRenewer:msrabi@msra-sa-41:9000] org.apache.hadoop.hdfs.LeaseRenewer: Failed to renew lease for [DFSClient_NONMAPREDUCE_1537864556_1] for 156 seconds.  Will retry shortly ...",
                &["2015-10-18", "18:07:34,393", "WARN", "LeaseRenewer:msrabi@msra-sa-41:9000", "org.apache.hadoop.hdfs.LeaseRenewer", "Failed to renew lease for [DFSClient_NONMAPREDUCE_1537864556_1] for 156 seconds.  Will retry shortly ..."],
            ),
        ],
    );
}

#[test]
fn hpc_example_splits_real_lines() {
    check(
        "loghub-hpc.yaml",
        &["event.id", "host.hostname", "log.logger", "event.action", "unix_time", "hpc.flag", "message"],
        &[
            // csv 1: `\042` is in the log as written
            (
                r"134681 node-246 unix.hw state_change.unavailable 1077804742 1 Component State Change: Component \042SCSI-WWID:01000010:6005-08b4-0001-00c6-0006-3000-003d-0000\042 is in the unavailable state (HWID=1973)",
                &["134681", "node-246", "unix.hw", "state_change.unavailable", "1077804742", "1", r"Component State Change: Component \042SCSI-WWID:01000010:6005-08b4-0001-00c6-0006-3000-003d-0000\042 is in the unavailable state (HWID=1973)"],
            ),
            // csv 13: two blanks in the content stay
            (
                "2568643 node-70 action start 1074119817 1 clusterAddMember  (command 1902)",
                &["2568643", "node-70", "action", "start", "1074119817", "1", "clusterAddMember  (command 1902)"],
            ),
            // csv 154: the node column holds a command number
            (
                "2566692 1897 boot_cmd success 1073991950 1 Command has completed successfully",
                &["2566692", "1897", "boot_cmd", "success", "1073991950", "1", "Command has completed successfully"],
            ),
            // format
            (
                r"70088 2206 shutdown_cmd new 1077059790 1 Targeting domains:node-D7 and nodes:node-[224\ 228\ 232]",
                &["70088", "2206", "shutdown_cmd", "new", "1077059790", "1", r"Targeting domains:node-D7 and nodes:node-[224\ 228\ 232]"],
            ),
            // format
            (
                r"51338 node-3 node psu 1106496000 1 psu failure\ ambient=28",
                &["51338", "node-3", "node", "psu", "1106496000", "1", r"psu failure\ ambient=28"],
            ),
            // format
            (
                "147394 Interconnect-0N00 switch_module temphigh 1129812510 1 Temperature (41C) exceeds warning threshold",
                &["147394", "Interconnect-0N00", "switch_module", "temphigh", "1129812510", "1", "Temperature (41C) exceeds warning threshold"],
            ),
        ],
    );
}

#[test]
fn bgl_example_splits_real_lines() {
    check(
        "loghub-bgl.yaml",
        &["label", "unix_time", "date", "host.hostname", "time", "bgl.node_repeat", "bgl.type", "log.logger", "log.level", "message"],
        &[
            // csv 1
            (
                "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO instruction cache parity error corrected",
                &["-", "1117838570", "2005.06.03", "R02-M1-N0-C:J12-U11", "2005-06-03-15.42.50.675872", "R02-M1-N0-C:J12-U11", "RAS", "KERNEL", "INFO", "instruction cache parity error corrected"],
            ),
            // csv 8
            (
                "- 1117848119 2005.06.03 R16-M1-N2-C:J17-U01 2005-06-03-18.21.59.871925 R16-M1-N2-C:J17-U01 RAS KERNEL INFO CE sym 2, at 0x0b85eee0, mask 0x05",
                &["-", "1117848119", "2005.06.03", "R16-M1-N2-C:J17-U01", "2005-06-03-18.21.59.871925", "R16-M1-N2-C:J17-U01", "RAS", "KERNEL", "INFO", "CE sym 2, at 0x0b85eee0, mask 0x05"],
            ),
            // csv 9: an alert (label set), component APP
            (
                "APPREAD 1117869872 2005.06.04 R04-M1-N4-I:J18-U11 2005-06-04-00.24.32.432192 R04-M1-N4-I:J18-U11 RAS APP FATAL ciod: failed to read message prefix on control stream (CioStream socket to 172.16.96.116:33569",
                &["APPREAD", "1117869872", "2005.06.04", "R04-M1-N4-I:J18-U11", "2005-06-04-00.24.32.432192", "R04-M1-N4-I:J18-U11", "RAS", "APP", "FATAL", "ciod: failed to read message prefix on control stream (CioStream socket to 172.16.96.116:33569"],
            ),
            // csv 32
            (
                "- 1117984246 2005.06.05 R30-M1-N3-C:J02-U01 2005-06-05-08.10.46.344235 R30-M1-N3-C:J02-U01 RAS KERNEL FATAL force load/store alignment...............0",
                &["-", "1117984246", "2005.06.05", "R30-M1-N3-C:J02-U01", "2005-06-05-08.10.46.344235", "R30-M1-N3-C:J02-U01", "RAS", "KERNEL", "FATAL", "force load/store alignment...............0"],
            ),
            // csv 85
            (
                "- 1118193358 2005.06.07 R11-M0-NC-I:J18-U01 2005-06-07-18.15.58.583443 R11-M0-NC-I:J18-U01 RAS APP FATAL ciod: LOGIN chdir(/p/gb2/glosli/8M_5000K/t800) failed: No such file or directory",
                &["-", "1118193358", "2005.06.07", "R11-M0-NC-I:J18-U01", "2005-06-07-18.15.58.583443", "R11-M0-NC-I:J18-U01", "RAS", "APP", "FATAL", "ciod: LOGIN chdir(/p/gb2/glosli/8M_5000K/t800) failed: No such file or directory"],
            ),
            // format
            (
                "KERNDTLB 1118536327 2005.06.11 R30-M0-N9-C:J16-U01 2005-06-11-17.32.07.581048 R30-M0-N9-C:J16-U01 RAS KERNEL FATAL data TLB error interrupt",
                &["KERNDTLB", "1118536327", "2005.06.11", "R30-M0-N9-C:J16-U01", "2005-06-11-17.32.07.581048", "R30-M0-N9-C:J16-U01", "RAS", "KERNEL", "FATAL", "data TLB error interrupt"],
            ),
        ],
    );
}

#[test]
fn thunderbird_example_splits_real_lines_with_and_without_pid() {
    check(
        "loghub-thunderbird.yaml",
        &["label", "unix_time", "date", "host.hostname", "month", "day", "time", "log.syslog.hostname", "process.name", "process.pid", "message"],
        &[
            // csv 1
            (
                "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root",
                &["-", "1131566461", "2005.11.09", "dn228", "Nov", "9", "12:01:01", "dn228/dn228", "crond(pam_unix)", "2915", "session closed for user root"],
            ),
            // csv 3
            (
                "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond[2916]: (root) CMD (run-parts /etc/cron.hourly)",
                &["-", "1131566461", "2005.11.09", "dn228", "Nov", "9", "12:01:01", "dn228/dn228", "crond", "2916", "(root) CMD (run-parts /etc/cron.hourly)"],
            ),
            // csv 40: a path as the program
            (
                "- 1131566461 2005.11.09 tbird-admin1 Nov 9 12:01:01 local@tbird-admin1 /apps/x86_64/system/ganglia-3.0.1/sbin/gmetad[1682]: data_thread() got not answer from any [Thunderbird_A8] datasource",
                &["-", "1131566461", "2005.11.09", "tbird-admin1", "Nov", "9", "12:01:01", "local@tbird-admin1", "/apps/x86_64/system/ganglia-3.0.1/sbin/gmetad", "1682", "data_thread() got not answer from any [Thunderbird_A8] datasource"],
            ),
            // csv 43: anonymised host names
            (
                "- 1131566462 2005.11.09 #8# Nov 9 12:01:02 #8#/#8# crond(pam_unix)[23469]: session closed for user root",
                &["-", "1131566462", "2005.11.09", "#8#", "Nov", "9", "12:01:02", "#8#/#8#", "crond(pam_unix)", "23469", "session closed for user root"],
            ),
            // csv 56: `[...]: ` again in the content
            (
                "- 1131566470 2005.11.09 tbird-sm1 Nov 9 12:01:10 src@tbird-sm1 ib_sm.x[24904]: [ib_sm_sweep.c:1831]: ********************** NEW SWEEP ********************",
                &["-", "1131566470", "2005.11.09", "tbird-sm1", "Nov", "9", "12:01:10", "src@tbird-sm1", "ib_sm.x", "24904", "[ib_sm_sweep.c:1831]: ********************** NEW SWEEP ********************"],
            ),
            // format: no pid
            (
                "- 1131567043 2005.11.09 tbird-admin1 Nov 9 12:10:43 local@tbird-admin1 portmap: portmap startup succeeded",
                &["-", "1131567043", "2005.11.09", "tbird-admin1", "Nov", "9", "12:10:43", "local@tbird-admin1", "portmap", "", "portmap startup succeeded"],
            ),
            // format: no pid, `: ` again in the content
            (
                "- 1131567043 2005.11.09 tbird-admin1 Nov 9 12:10:43 local@tbird-admin1 rc: Starting ts_fixup: succeeded",
                &["-", "1131567043", "2005.11.09", "tbird-admin1", "Nov", "9", "12:10:43", "local@tbird-admin1", "rc", "", "Starting ts_fixup: succeeded"],
            ),
            // format: `[0]` after a kernel subsystem is taken as its pid, as logparser does
            (
                "- 1131567043 2005.11.09 tbird-admin1 Nov 9 12:10:43 local@tbird-admin1 scsi[0]: scanning scsi channel 0 [Phy 0] for non-raid devices",
                &["-", "1131567043", "2005.11.09", "tbird-admin1", "Nov", "9", "12:10:43", "local@tbird-admin1", "scsi", "0", "scanning scsi channel 0 [Phy 0] for non-raid devices"],
            ),
            // format: a blank before the colon (logparser keeps it: `scsi0 `; trimmed here)
            (
                "- 1131567043 2005.11.09 tbird-admin1 Nov 9 12:10:43 local@tbird-admin1 scsi0 : LSI Logic MegaRAID driver",
                &["-", "1131567043", "2005.11.09", "tbird-admin1", "Nov", "9", "12:10:43", "local@tbird-admin1", "scsi0", "", "LSI Logic MegaRAID driver"],
            ),
        ],
    );
}

#[test]
fn openstack_example_splits_real_lines() {
    check(
        "loghub-openstack.yaml",
        &["log.file.path", "date", "time", "process.pid", "log.level", "log.logger", "openstack.context", "message"],
        &[
            // csv 1
            (
                r#"nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server [req-38101a0b-2096-447d-96ea-a692162415ae 113d3a99c3da401fbd62cc2caa5b96d2 54fadb412c4e40cdbaed9335e4c35a9e - - -] 10.11.10.1 "GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829"#,
                &["nova-api.log.1.2017-05-16_13:53:08", "2017-05-16", "00:00:00.008", "25746", "INFO", "nova.osapi_compute.wsgi.server", "req-38101a0b-2096-447d-96ea-a692162415ae 113d3a99c3da401fbd62cc2caa5b96d2 54fadb412c4e40cdbaed9335e4c35a9e - - -", r#"10.11.10.1 "GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829"#],
            ),
            // csv 7: `[instance: ...]` stays in the content
            (
                "nova-compute.log.1.2017-05-16_13:55:31 2017-05-16 00:00:04.500 2931 INFO nova.compute.manager [req-3ea4052c-895d-4b64-9e2d-04d64c4d94ab - - - - -] [instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Started (Lifecycle Event)",
                &["nova-compute.log.1.2017-05-16_13:55:31", "2017-05-16", "00:00:04.500", "2931", "INFO", "nova.compute.manager", "req-3ea4052c-895d-4b64-9e2d-04d64c4d94ab - - - - -", "[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Started (Lifecycle Event)"],
            ),
            // csv 21
            (
                "nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:10.279 25743 INFO nova.api.openstack.compute.server_external_events [req-ab451068-9756-4ad9-9d18-5ceaa6424627 f7b8d1f1d4d44643b07fa10ca7d021fb e9746973ac574c6b8a9e8857f56a7608 - - -] Creating event network-vif-plugged:e3871ffd-5cd5-4287-bddd-3529f7b59515 for instance b9000564-fe1a-409b-b8cc-1e88b294cd1d",
                &["nova-api.log.1.2017-05-16_13:53:08", "2017-05-16", "00:00:10.279", "25743", "INFO", "nova.api.openstack.compute.server_external_events", "req-ab451068-9756-4ad9-9d18-5ceaa6424627 f7b8d1f1d4d44643b07fa10ca7d021fb e9746973ac574c6b8a9e8857f56a7608 - - -", "Creating event network-vif-plugged:e3871ffd-5cd5-4287-bddd-3529f7b59515 for instance b9000564-fe1a-409b-b8cc-1e88b294cd1d"],
            ),
            // csv 24: no request context (`[-]`)
            (
                "nova-compute.log.1.2017-05-16_13:55:31 2017-05-16 00:00:10.302 2931 INFO nova.virt.libvirt.driver [-] [instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] Instance spawned successfully.",
                &["nova-compute.log.1.2017-05-16_13:55:31", "2017-05-16", "00:00:10.302", "2931", "INFO", "nova.virt.libvirt.driver", "-", "[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] Instance spawned successfully."],
            ),
            // csv 35
            (
                "nova-compute.log.1.2017-05-16_13:55:31 2017-05-16 00:00:14.265 2931 INFO nova.compute.resource_tracker [req-addc1839-2ed5-4778-b57e-5854eb7b8b09 - - - - -] Total usable vcpus: 16, total allocated vcpus: 1",
                &["nova-compute.log.1.2017-05-16_13:55:31", "2017-05-16", "00:00:14.265", "2931", "INFO", "nova.compute.resource_tracker", "req-addc1839-2ed5-4778-b57e-5854eb7b8b09 - - - - -", "Total usable vcpus: 16, total allocated vcpus: 1"],
            ),
            // csv 42
            (
                r#"nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:16.806 25783 INFO nova.metadata.wsgi.server [-] 10.11.21.122,10.11.10.1 "GET /openstack/2013-10-17 HTTP/1.1" status: 200 len: 157 time: 0.0008290"#,
                &["nova-api.log.1.2017-05-16_13:53:08", "2017-05-16", "00:00:16.806", "25783", "INFO", "nova.metadata.wsgi.server", "-", r#"10.11.21.122,10.11.10.1 "GET /openstack/2013-10-17 HTTP/1.1" status: 200 len: 157 time: 0.0008290"#],
            ),
        ],
    );
}
