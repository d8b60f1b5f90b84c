/*
 * A single OpenSearch node for trawl's tests, started from Maven Central jars instead of a
 * distribution tarball. The HTTP layer is a plugin (transport-netty4-client) that a
 * distribution loads from its modules/ folder; here it is passed as a classpath plugin, which
 * is what the protected Node constructor (and the test framework's MockNode) is for.
 *
 * Usage: java -cp 'lib/*:classes' TrawlOpenSearchNode HOME [key=value ...]
 * (HOME/config is the config folder, HOME/modules and HOME/plugins are read as usual.)
 * Prints "trawl-opensearch http=HOST:PORT" once the node is started, then runs until its
 * standard input closes (the test process ended or dropped its handle), and closes the node.
 */
import java.io.InputStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

public final class TrawlOpenSearchNode extends Node {
    private TrawlOpenSearchNode(Environment environment) {
        super(environment, List.of(Netty4Plugin.class), true);
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: TrawlOpenSearchNode HOME [key=value ...]");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Settings.Builder builder = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "trawl-test")
            .put("node.name", "trawl-test-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", "0")
            .put("transport.port", "0")
            .put("discovery.type", "single-node")
            // The test machine's disk may be "full" by the default watermarks (85%, 90%,
            // 95%), which would make indices read-only and every bulk answer 429/403.
            .put("cluster.routing.allocation.disk.threshold_enabled", "false");
        for (int i = 1; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("setting without '=': " + args[i]);
                System.exit(2);
            }
            builder.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        Settings settings = builder.build();
        LogConfigurator.registerErrorListener();
        LogConfigurator.configureWithoutConfig(settings);
        Environment environment =
            InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), null, () -> "trawl-test-node");
        // With -Dtrawl.opensearch.modules=true the transport is a module under HOME/modules
        // (beside plugins that bring their own Netty jars) instead of a classpath plugin.
        Node node = Boolean.getBoolean("trawl.opensearch.modules")
            ? new Node(environment)
            : new TrawlOpenSearchNode(environment);
        node.start();
        String http = node.injector().getInstance(HttpServerTransport.class)
            .boundAddress().publishAddress().toString();
        System.out.println("trawl-opensearch http=" + http);
        System.out.flush();

        // Standard input is the node's lifeline: the test holds its write end, so the node goes
        // away with the test even when the test process is killed.
        InputStream in = System.in;
        byte[] buf = new byte[256];
        while (in.read(buf) >= 0) {
            // Nothing is sent on it; read until end of file.
        }
        node.close();
        System.exit(0);
    }
}
