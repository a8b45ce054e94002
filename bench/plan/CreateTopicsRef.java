// CreateTopicsRef: the reference for pipectl's batched apply (bench/plan): Kafka's own Java
// AdminClient creates N topics (1 partition, replication factor 1, retention.ms and
// cleanup.policy set, as the bench's manifest) in ONE createTopics call and waits for every
// result. Prints the seconds from the call to the last result (the JVM's start is not counted).
// Usage: java -cp '<kafka libs>/*:<classes>' CreateTopicsRef BOOTSTRAP PREFIX N
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;

public final class CreateTopicsRef {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        int n = Integer.parseInt(args[2]);
        List<NewTopic> topics = new ArrayList<>(n);
        for (int i = 1; i <= n; i++) {
            topics.add(new NewTopic(String.format("%s%04d", args[1], i), 1, (short) 1)
                           .configs(Map.of("retention.ms", "86400000", "cleanup.policy", "delete")));
        }
        try (Admin admin = Admin.create(p)) {
            admin.describeCluster().nodes().get(); // connected before the clock starts
            long t0 = System.nanoTime();
            admin.createTopics(topics).all().get();
            System.out.printf("%.3f%n", (System.nanoTime() - t0) / 1e9);
        }
    }
}
