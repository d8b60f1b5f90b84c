//! The example pipelines for loghub's desktop, mobile and proxy datasets (Windows, Android,
//! HealthApp, Proxifier, Mac): real lines through the real binary.
//!
//! Lines are from github.com/logpai/loghub `<Dataset>/<Dataset>_2k.log` (Proxifier `full`
//! cases: lines of the full Proxifier log, which has 64-bit processes). A case marked `csv N`
//! is row N of `<Dataset>_2k.log_structured.csv` (the ground truth) with its columns renamed
//! as the pipeline's header says; `format` cases apply logparser's benchmark `log_format`.

use crate::support;

use support::loghub::check;

#[test]
fn windows_example_splits_real_lines() {
    check(
        "loghub-windows.yaml",
        &["date", "time", "log.level", "log.logger", "message"],
        &[
            // csv 1
            (
                r"2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack v6.1.7601.23505 with Core: C:\Windows\winsxs\amd64_microsoft-windows-servicingstack_31bf3856ad364e35_6.1.7601.23505_none_681aa442f6fed7f0\cbscore.dll",
                &["2016-09-28", "04:30:30", "Info", "CBS", r"Loaded Servicing Stack v6.1.7601.23505 with Core: C:\Windows\winsxs\amd64_microsoft-windows-servicingstack_31bf3856ad364e35_6.1.7601.23505_none_681aa442f6fed7f0\cbscore.dll"],
            ),
            // csv 2: component CSI
            (
                "2016-09-28 04:30:31, Info                  CSI    00000001@2016/9/27:20:30:31.455 WcpInitialize (wcp.dll version 0.0.0.6) called (stack @0x7fed806eb5d @0x7fef9fb9b6d @0x7fef9f8358f @0xff83e97c @0xff83d799 @0xff83db2f)",
                &["2016-09-28", "04:30:31", "Info", "CSI", "00000001@2016/9/27:20:30:31.455 WcpInitialize (wcp.dll version 0.0.0.6) called (stack @0x7fed806eb5d @0x7fef9fb9b6d @0x7fef9f8358f @0xff83e97c @0xff83d799 @0xff83db2f)"],
            ),
            // csv 11: commas in the content
            (
                r"2016-09-28 04:30:31, Info                  CBS    SQM: Failed to start upload with file pattern: C:\Windows\servicing\sqm\*_std.sqm, flags: 0x2 [HRESULT = 0x80004005 - E_FAIL]",
                &["2016-09-28", "04:30:31", "Info", "CBS", r"SQM: Failed to start upload with file pattern: C:\Windows\servicing\sqm\*_std.sqm, flags: 0x2 [HRESULT = 0x80004005 - E_FAIL]"],
            ),
            // csv 18
            (
                r#"2016-09-28 04:30:31, Info                  CSI    00000005 Creating NT transaction (seq 1), objectname [6]"(null)""#,
                &["2016-09-28", "04:30:31", "Info", "CSI", r#"00000005 Creating NT transaction (seq 1), objectname [6]"(null)""#],
            ),
            // csv 20: the content ends in a colon
            (
                "2016-09-28 04:30:31, Info                  CSI    00000007@2016/9/27:20:30:31.462 CSI perf trace:",
                &["2016-09-28", "04:30:31", "Info", "CSI", "00000007@2016/9/27:20:30:31.462 CSI perf trace:"],
            ),
            // format
            (
                "2016-09-29 02:04:22, Info                  CBS    Read out cached package applicability for package: Package_for_KB2800095~31bf3856ad364e35~amd64~~6.1.2.0, ApplicableState: 112, CurrentState:112",
                &["2016-09-29", "02:04:22", "Info", "CBS", "Read out cached package applicability for package: Package_for_KB2800095~31bf3856ad364e35~amd64~~6.1.2.0, ApplicableState: 112, CurrentState:112"],
            ),
        ],
    );
}

#[test]
fn android_example_splits_real_lines() {
    check(
        "loghub-android.yaml",
        &["date", "time", "process.pid", "process.thread.id", "log.level", "log.logger", "message"],
        &[
            // csv 2
            (
                r#"03-17 16:13:38.819  1702  8671 D PowerManagerService: acquire lock=233570404, flags=0x1, tag="View Lock", name=com.android.systemui, ws=null, uid=10037, pid=2227"#,
                &["03-17", "16:13:38.819", "1702", "8671", "D", "PowerManagerService", r#"acquire lock=233570404, flags=0x1, tag="View Lock", name=com.android.systemui, ws=null, uid=10037, pid=2227"#],
            ),
            // csv 4: level V
            (
                "03-17 16:13:38.839  1702  2113 V WindowManager: Skipping AppWindowToken{df0798e token=Token{78af589 ActivityRecord{3b04890 u0 com.tencent.qt.qtl/com.tencent.video.player.activity.PlayerActivity t761}}} -- going to hide",
                &["03-17", "16:13:38.839", "1702", "2113", "V", "WindowManager", "Skipping AppWindowToken{df0798e token=Token{78af589 ActivityRecord{3b04890 u0 com.tencent.qt.qtl/com.tencent.video.player.activity.PlayerActivity t761}}} -- going to hide"],
            ),
            // csv 5
            (
                "03-17 16:13:38.859  2227  2227 D TextView: visible is system.time.showampm",
                &["03-17", "16:13:38.859", "2227", "2227", "D", "TextView", "visible is system.time.showampm"],
            ),
            // csv 20: `: ` again in the content
            (
                "03-17 16:13:38.935  1702  3697 W ActivityManager: getRunningAppProcesses: caller 10113 does not hold REAL_GET_TASKS; limiting output",
                &["03-17", "16:13:38.935", "1702", "3697", "W", "ActivityManager", "getRunningAppProcesses: caller 10113 does not hold REAL_GET_TASKS; limiting output"],
            ),
            // csv 21: a five-digit thread id takes the padding
            (
                r#"03-17 16:13:38.936  1702 14638 D PowerManagerService: release:lock=189667585, flg=0x0, tag="*launch*", name=android", ws=WorkSource{10113}, uid=1000, pid=1702"#,
                &["03-17", "16:13:38.936", "1702", "14638", "D", "PowerManagerService", r#"release:lock=189667585, flg=0x0, tag="*launch*", name=android", ws=WorkSource{10113}, uid=1000, pid=1702"#],
            ),
            // csv 27: a trailing blank (logparser strips every line)
            (
                "03-17 16:13:39.006  1702  2639 I WindowManager: Destroying surface Surface(name=com.tencent.qt.qtl/com.tencent.video.player.activity.PlayerActivity) called by com.android.server.wm.WindowStateAnimator.destroySurface:2060 com.android.server.wm.WindowStateAnimator.destroySurfaceLocked:913 com.android.server.wm.WindowState.destroyOrSaveSurface:2201 com.android.server.wm.WindowManagerService.tryStartExitingAnimation:3299 com.android.server.wm.WindowManagerService.relayoutWindow:3179 com.android.server.wm.Session.relayout:215 android.view.IWindowSession$Stub.onTransact:286 com.android.server.wm.Session.onTransact:136 ",
                &["03-17", "16:13:39.006", "1702", "2639", "I", "WindowManager", "Destroying surface Surface(name=com.tencent.qt.qtl/com.tencent.video.player.activity.PlayerActivity) called by com.android.server.wm.WindowStateAnimator.destroySurface:2060 com.android.server.wm.WindowStateAnimator.destroySurfaceLocked:913 com.android.server.wm.WindowState.destroyOrSaveSurface:2201 com.android.server.wm.WindowManagerService.tryStartExitingAnimation:3299 com.android.server.wm.WindowManagerService.relayoutWindow:3179 com.android.server.wm.Session.relayout:215 android.view.IWindowSession$Stub.onTransact:286 com.android.server.wm.Session.onTransact:136"],
            ),
            // csv 48: two blanks in the content stay
            (
                "03-17 16:13:40.241  2626  8682 I PhoneInterfaceManager: shouldBlockLocation  ret:false",
                &["03-17", "16:13:40.241", "2626", "8682", "I", "PhoneInterfaceManager", "shouldBlockLocation  ret:false"],
            ),
        ],
    );
}

#[test]
fn healthapp_example_splits_real_lines() {
    check(
        "loghub-healthapp.yaml",
        &["time", "log.logger", "process.pid", "message"],
        &[
            // csv 1
            (
                "20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579",
                &["20171223-22:15:29:606", "Step_LSC", "30002312", "onStandStepChanged 3579"],
            ),
            // csv 2
            (
                "20171223-22:15:29:615|Step_LSC|30002312|onExtend:1514038530000 14 0 4",
                &["20171223-22:15:29:615", "Step_LSC", "30002312", "onExtend:1514038530000 14 0 4"],
            ),
            // csv 6: the leading blank of the content is kept, as in the ground truth
            (
                "20171223-22:15:29:635|Step_SPUtils|30002312| getTodayTotalDetailSteps = 1514038440000##6993##548365##8661##12266##27164404",
                &["20171223-22:15:29:635", "Step_SPUtils", "30002312", " getTodayTotalDetailSteps = 1514038440000##6993##548365##8661##12266##27164404"],
            ),
            // csv 11
            (
                "20171223-22:15:29:649|Step_StandReportReceiver|30002312|REPORT : 7007 5002 150089 240",
                &["20171223-22:15:29:649", "Step_StandReportReceiver", "30002312", "REPORT : 7007 5002 150089 240"],
            ),
            // csv 70: two-digit milliseconds
            (
                "20171223-22:15:35:20|Step_ExtSDM|30002312|calculateCaloriesWithCache totalCalories=126989",
                &["20171223-22:15:35:20", "Step_ExtSDM", "30002312", "calculateCaloriesWithCache totalCalories=126989"],
            ),
            // csv 73
            (
                "20171223-22:15:35:23|Step_StandReportReceiver|30002312|screen status unknown,think screen on",
                &["20171223-22:15:35:23", "Step_StandReportReceiver", "30002312", "screen status unknown,think screen on"],
            ),
        ],
    );
}

#[test]
fn proxifier_example_splits_real_lines() {
    check(
        "loghub-proxifier.yaml",
        &["time", "process.name", "message"],
        &[
            // csv 1
            (
                "[10.30 16:49:06] chrome.exe - proxy.cse.cuhk.edu.hk:5070 open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS",
                &["10.30 16:49:06", "chrome.exe", "proxy.cse.cuhk.edu.hk:5070 open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS"],
            ),
            // csv 11
            (
                "[10.30 16:49:07] chrome.exe - proxy.cse.cuhk.edu.hk:5070 close, 451 bytes sent, 18846 bytes (18.4 KB) received, lifetime <1 sec",
                &["10.30 16:49:07", "chrome.exe", "proxy.cse.cuhk.edu.hk:5070 close, 451 bytes sent, 18846 bytes (18.4 KB) received, lifetime <1 sec"],
            ),
            // format: ` - ` again in the content
            (
                "[10.30 18:04:14] Skype.exe - 86.99.222.235:443 error : Could not connect through proxy proxy.cse.cuhk.edu.hk:5070 - Proxy closed the connection unexpectedly.",
                &["10.30 18:04:14", "Skype.exe", "86.99.222.235:443 error : Could not connect through proxy proxy.cse.cuhk.edu.hk:5070 - Proxy closed the connection unexpectedly."],
            ),
            // full: a 64-bit process keeps its marker in the program, as logparser does
            (
                "[07.26 13:59:44] chrome.exe *64 - www.google.com.hk:443 open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS",
                &["07.26 13:59:44", "chrome.exe *64", "www.google.com.hk:443 open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS"],
            ),
            // full
            (
                "[07.27 05:05:50] chrome.exe *64 - qa.sockets.stackexchange.com:443 error : Could not connect to proxy proxy.cse.cuhk.edu.hk:5070 - connection attempt failed with error 10061",
                &["07.27 05:05:50", "chrome.exe *64", "qa.sockets.stackexchange.com:443 error : Could not connect to proxy proxy.cse.cuhk.edu.hk:5070 - connection attempt failed with error 10061"],
            ),
            // full
            (
                "[05.01 00:00:00] git-remote-https.exe - proxy.cse.cuhk.edu.hk:5070 close, 877 bytes sent, 3806 bytes (3.71 KB) received, lifetime 00:01",
                &["05.01 00:00:00", "git-remote-https.exe", "proxy.cse.cuhk.edu.hk:5070 close, 877 bytes sent, 3806 bytes (3.71 KB) received, lifetime 00:01"],
            ),
        ],
    );
}

#[test]
fn mac_example_splits_real_lines_with_address() {
    check(
        "loghub-mac.yaml",
        &["month", "day", "time", "host.hostname", "process.name", "process.pid", "address", "message"],
        &[
            // csv 1: a padded single-digit day
            (
                "Jul  1 09:00:55 calvisitor-10-105-160-95 kernel[0]: IOThunderboltSwitch<0>(0x0)::listenerCallback - Thunderbolt HPD packet for route = 0x0 port = 11 unplug = 0",
                &["Jul", "1", "09:00:55", "calvisitor-10-105-160-95", "kernel", "0", "", "IOThunderboltSwitch<0>(0x0)::listenerCallback - Thunderbolt HPD packet for route = 0x0 port = 11 unplug = 0"],
            ),
            // csv 3: brackets again in the content
            (
                "Jul  1 09:01:06 calvisitor-10-105-160-95 QQ[10018]: FA||Url||taskID[2019352994] dealloc",
                &["Jul", "1", "09:01:06", "calvisitor-10-105-160-95", "QQ", "10018", "", "FA||Url||taskID[2019352994] dealloc"],
            ),
            // csv 10
            (
                "Jul  1 09:04:37 authorMacBook-Pro symptomsd[215]: __73-[NetworkAnalyticsEngine observeValueForKeyPath:ofObject:change:context:]_block_invoke unexpected switch value 2",
                &["Jul", "1", "09:04:37", "authorMacBook-Pro", "symptomsd", "215", "", "__73-[NetworkAnalyticsEngine observeValueForKeyPath:ofObject:change:context:]_block_invoke unexpected switch value 2"],
            ),
            // csv 18
            (
                "Jul  1 09:21:58 calvisitor-10-105-160-95 com.apple.WebKit.WebContent[25654]: [09:21:58.929] <<<< CRABS >>>> crabsFlumeHostAvailable: [0x7f961cf08cf0] Byte flume reports host available again.",
                &["Jul", "1", "09:21:58", "calvisitor-10-105-160-95", "com.apple.WebKit.WebContent", "25654", "", "[09:21:58.929] <<<< CRABS >>>> crabsFlumeHostAvailable: [0x7f961cf08cf0] Byte flume reports host available again."],
            ),
            // csv 32: ` : ` in the content
            (
                "Jul  1 09:28:41 authorMacBook-Pro netbiosd[31198]: network_reachability_changed : network is not reachable, netbiosd is shutting down",
                &["Jul", "1", "09:28:41", "authorMacBook-Pro", "netbiosd", "31198", "", "network_reachability_changed : network is not reachable, netbiosd is shutting down"],
            ),
            // csv 36: the optional address
            (
                "Jul  1 09:29:02 calvisitor-10-105-160-95 sandboxd[129] ([31211]): com.apple.Addres(31211) deny network-outbound /private/var/run/mDNSResponder",
                &["Jul", "1", "09:29:02", "calvisitor-10-105-160-95", "sandboxd", "129", "[31211]", "com.apple.Addres(31211) deny network-outbound /private/var/run/mDNSResponder"],
            ),
            // format: two blanks after the colon (logparser's `:\s+` takes both)
            (
                r#"Jul  1 10:13:39 calvisitor-10-105-160-95 secd[276]:  SOSAccountThisDeviceCanSyncWithCircle sync with device failure: Error Domain=com.apple.security.sos.error Code=1035 "Account identity not set" UserInfo={NSDescription=Account identity not set}"#,
                &["Jul", "1", "10:13:39", "calvisitor-10-105-160-95", "secd", "276", "", r#"SOSAccountThisDeviceCanSyncWithCircle sync with device failure: Error Domain=com.apple.security.sos.error Code=1035 "Account identity not set" UserInfo={NSDescription=Account identity not set}"#],
            ),
        ],
    );
}
