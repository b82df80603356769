import { chooseGpu, kernelUses } from '../choose';
import { device, GIB, sample } from './fixtures';

const proc = (kernel_id: string | null, used: number | null, pid = 100) => ({
  pid,
  name: 'python3',
  used_memory: used,
  kernel_id,
  notebook_path: null
});

describe('chooseGpu', () => {
  it('is null without a readable GPU', () => {
    expect(chooseGpu(null, null)).toBeNull();
    expect(chooseGpu(sample([]), 'k')).toBeNull();
    expect(chooseGpu(sample([device({ lost: true })]), null)).toBeNull();
  });

  it("takes the GPU of the current notebook's kernel", () => {
    const busy = device({ index: 0, utilization: { gpu: 99, memory: 50 } });
    const mine = device({
      index: 1,
      utilization: { gpu: 1, memory: 1 },
      processes: [proc('kernel-a', GIB)]
    });
    const chosen = chooseGpu(sample([busy, mine]), 'kernel-a');
    expect(chosen?.device.index).toBe(1);
    expect(chosen?.why).toBe('kernel');
  });

  it('of two GPUs with the kernel, the one where it holds more', () => {
    const a = device({ index: 0, processes: [proc('k', GIB)] });
    const b = device({ index: 1, processes: [proc('k', 3 * GIB), proc('k', GIB, 101)] });
    expect(chooseGpu(sample([a, b]), 'k')?.device.index).toBe(1);
  });

  it('else the busiest: utilization, then memory, then index', () => {
    const idle = device({ index: 0, utilization: { gpu: 0, memory: 0 } });
    const busy = device({ index: 1, utilization: { gpu: 80, memory: 0 } });
    expect(chooseGpu(sample([idle, busy]), 'other')?.device.index).toBe(1);
    expect(chooseGpu(sample([idle, busy]), null)?.why).toBe('busiest');
    const full = device({
      index: 2,
      utilization: { gpu: 0, memory: 0 },
      memory: { total: 10, used: 9 }
    });
    expect(chooseGpu(sample([idle, full]), null)?.device.index).toBe(2);
    const twin = device({ index: 3, utilization: { gpu: 0, memory: 0 } });
    expect(chooseGpu(sample([twin, idle]), null)?.device.index).toBe(0);
  });

  it('unknown utilization counts below 0%', () => {
    const unknown = device({ index: 0, utilization: null });
    const zero = device({ index: 1, utilization: { gpu: 0, memory: 0 } });
    expect(chooseGpu(sample([unknown, zero]), null)?.device.index).toBe(1);
  });
});

describe('kernelUses', () => {
  it('adds up each kernel, names it by the local session, else the remote, else its id', () => {
    const d = device({
      processes: [
        proc('k1', GIB, 1),
        proc('k1', 2 * GIB, 2),
        { ...proc('k2', 5 * GIB, 3), notebook_path: 'remote/nb.ipynb' },
        proc('k3abcdefgh-1234', null, 4),
        { ...proc(null, 512, 5), name: 'Xorg' }
      ]
    });
    const rows = kernelUses(d, new Map([['k1', 'local.ipynb']]));
    expect(rows).toEqual([
      { label: 'remote/nb.ipynb', kernelId: 'k2', bytes: 5 * GIB },
      { label: 'local.ipynb', kernelId: 'k1', bytes: 3 * GIB },
      { label: 'Xorg', kernelId: null, bytes: 512 },
      { label: 'kernel k3abcdef', kernelId: 'k3abcdefgh-1234', bytes: null }
    ]);
  });

  it('is empty without processes', () => {
    expect(kernelUses(device({ processes: null }), new Map())).toEqual([]);
  });
});
