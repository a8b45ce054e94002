// CreateTopicsRef: the reference for pipectl's batched apply (bench/plan): Kafka's own Java
// AdminClient creates N topics (1 partition, replication factor 1, retention.ms and
// cleanup.policy set, as the bench's manifest) in ONE createTopics call and waits for every
// result; then waits until describeTopics shows every partition with a leader (what pipectl's
// apply waits for before it reports a topic done: usable by producers and consumers). Prints two
// figures, seconds from the call: to the last result, and to all partitions led (the JVM's
// start is not counted).
// Usage: java -cp '<kafka libs>/*:<classes>' CreateTopicsRef BOOTSTRAP PREFIX N
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartitionInfo;
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
            long t1 = System.nanoTime();
            List<String> names = new ArrayList<>(n);
            for (NewTopic t : topics)
                names.add(t.name());
            for (;;) {
                boolean led;
                try {
                    Map<String, TopicDescription> d =
                        admin.describeTopics(names).allTopicNames().get();
                    led = d.size() == n;
                    for (TopicDescription td : d.values())
                        for (TopicPartitionInfo pi : td.partitions())
                            led &= pi.leader() != null && !pi.leader().isEmpty();
                } catch (java.util.concurrent.ExecutionException e) {
                    led = false; // not known to the broker yet (UnknownTopicOrPartition)
                }
                if (led)
                    break;
                Thread.sleep(100);
            }
            System.out.printf("%.3f %.3f%n", (t1 - t0) / 1e9, (System.nanoTime() - t0) / 1e9);
        }
    }
}
